"""Training, fine-tuning, export and evaluation of the networks (pip only; not shipped in the Slicer module)."""
