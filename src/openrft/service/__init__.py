"""The OpenAI-compatible HTTP service: files, fine-tuning jobs, graders, models, chat."""
