"""Text filters shared by the stages that build training data: cleaning rules (``clean``), the
language filter (``langid``), the quality scorer (``quality``), MinHash near-duplicates (``minhash``)
and n-gram decontamination (``decontam``), each with its settings in ``config``."""
