"""Our own Qwen3.5 text forward over packed prompts (no padding): model, batch layout, weight loading."""
