"""What differs between tasks, and nothing else.

- :mod:`xlt.tasks.kinds`: classification vs generation — which model class, which batches, how to evaluate;
- :mod:`xlt.tasks.templates`: each generation task's prompt template and metric (one entry each);
- :mod:`xlt.tasks.generation`: teacher-forced generation batches and greedy decoding;
- :mod:`xlt.tasks.verbalizer`: decoder classification by label-word likelihood.
"""
