"""HTTP routes, one module per OpenAI resource; handlers stay thin (no SQL here)."""
