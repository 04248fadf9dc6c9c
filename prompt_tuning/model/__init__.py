"""The network: T5 1.1 layers, the T5, soft prompts, the methods' plug-in
points, decoding, the model API, cost arithmetic and a prompt's neighbours."""
