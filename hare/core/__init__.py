"""The shared layer: what every stage may use, importing no stage.

- ``io``: compressed files, atomic writes, JSON and JSON Lines records (one reader, whose errors name
  file and line), the one table of file formats, fingerprints;
- ``documents``: the ``Document`` type and its shard files;
- ``text``: word splitting, normalization, word codes and n-gram hashes (cleaning, MinHash and
  decontamination all take them from here);
- ``ngrams``: the hashed n-gram index of evaluation items (decontamination and the leakage audit);
- ``benchmarks``: the benchmark registry, one module per benchmark;
- ``tokenizer``, ``dist``, ``progress``: tokenizer loading, process groups, progress and logs;
- ``step``: the step contract (``Step``, ``StepContext``, ``Stats``).

``tests/test_layers.py`` walks the imports: no module here imports a stage package
(``hare.corpus``, ``hare.train``, ``hare.evals``, ``hare.report``) or the runner.
"""
