"""Training data: JSONL rows in OpenAI's RFT format, validated before anything runs."""
