"""The network: T5 1.1 layers, the T5, soft prompts, decoding and the model API."""
