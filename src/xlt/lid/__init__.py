"""Language identification for routing each input to the run of its language (``xlt lid train``, ``xlt predict
--run-dirs``): a character n-gram model trained with scikit-learn (:mod:`xlt.lid.train`) and stored without
pickle as plain arrays, whose prediction is the same linear function in numpy (:mod:`xlt.lid.model`), so routing
needs neither scikit-learn nor an unsafe load."""
