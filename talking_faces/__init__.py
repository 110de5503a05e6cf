"""talking_faces: train, sample, score and rank audio-driven talking-face methods the same way.

raw clips -> prepare -> prepared dataset -> TalkingFaceDataModule -> TalkingFaceModule (fit,
generate) -> evaluate (results JSON) -> leaderboard. See README.md for the commands.
"""

__version__ = "0.1.0"
