"""The generator: vLLM's OpenAI-compatible server plus routes that report and swap the policy."""
