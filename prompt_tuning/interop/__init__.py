"""Other libraries' formats: HF transformers T5 safetensors (`hf`) and PEFT
adapters (`peft`)."""
