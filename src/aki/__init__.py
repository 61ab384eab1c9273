"""AKI: multimodal LLMs with modality-mutual attention."""
