"""`kiban serve`: an on-premise, OpenAI-compatible gateway with keys, scopes, quotas and an audit log.

Kept import-light on purpose (no engine, no HTTP stack): import the module you need, e.g.
`from kiban.serve.keys import KeyStore`.
"""
