"""What differs between tasks, and nothing else.

- :mod:`xlt.kinds.registry`: classification vs generation — which model class, which batches, how to evaluate;
- :mod:`xlt.scoring.generation`: each generation task's prompt template and metric (one entry each);
- :mod:`xlt.kinds.generation`: teacher-forced generation batches and greedy decoding;
- :mod:`xlt.kinds.verbalizer`: decoder classification by label-word likelihood.
"""
