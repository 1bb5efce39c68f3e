"""Text: corpus readers, dedup and split · token-id shards · term mining · tokenizers · vocabularies."""
