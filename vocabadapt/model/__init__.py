"""Models: hub loading (local directories, hub ids, safe by default) · safetensors streaming · embedding
keys · row building · the transplant."""
