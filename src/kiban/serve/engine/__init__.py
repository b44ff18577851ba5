"""Engines behind the gateway: `native` (in-process PyTorch, KV cache, continuous batching).

`base` holds the contract every engine meets (what the HTTP layer sees); the upstream proxy
(`kiban.serve.upstream`) is not an engine: it forwards whole HTTP requests.
"""
