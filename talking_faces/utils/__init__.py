"""Small helpers shared by every stage: atomic writes, hashing, progress, seeding."""
