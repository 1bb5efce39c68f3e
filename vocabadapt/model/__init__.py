"""Models: hub loading (local directories, hub ids, .gguf files; safe by default) · GGUF dequantisation ·
safetensors streaming · embedding keys · row building · the transplant."""

# The summary file transplant_model writes into the model directory it creates (read by RunLayout).
TRANSPLANT_SUMMARY = "transplant.json"
