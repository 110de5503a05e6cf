"""``prepare``: raw clips to a prepared dataset.

raw corpus (GRID / LRW / folder of videos / synthetic)
  -> :mod:`.readers`  find clips (``RawClip``) and those unusable before decoding
  -> :mod:`.clip`     per clip: :mod:`.video` decode at 25 fps and 16 kHz mono,
                      :mod:`.landmarks` (FAN or sidecar, gap filling, smoothing),
                      :mod:`.align` similarity alignment and crop,
                      :mod:`.audio` MFCC and log-mel at 100 Hz -> ``ProcessedClip``
  -> :mod:`.writer`   shards, manifest, ``meta.json``; :mod:`.splits` train/val/test and test pairs

Record types and constants live in :mod:`.types`. Nothing is imported here, so importing the
package stays cheap.
"""
