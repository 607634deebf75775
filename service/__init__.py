"""ragfirst service: retrieve, prompt, generate and cite answers over an ingested collection."""
