"""Plain ``nn.Module`` building blocks (no Lightning): encoders, decoders, recurrent cells, SyncNet.

Models in :mod:`talking_faces.models` assemble these into LightningModules that own losses,
optimizers and logging.
"""
