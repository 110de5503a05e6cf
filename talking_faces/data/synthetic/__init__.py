"""Built-in synthetic talking-head corpus.

``talking-faces synth`` writes a small GRID- or LRW-shaped corpus that needs no download: sentences
from the GRID grammar (:mod:`.lexicon`) are spoken by a numpy formant synthesizer with one voice per
speaker (:mod:`.speech`), the phone alignment drives a coarticulated mouth track (:mod:`.visemes`),
and the face renderer draws each frame from that mouth track, so the mouth is a function of the
audio. The corpus is then read by ``prepare`` like the real datasets.

Nothing is imported here on purpose: importing the package stays cheap.
"""
