"""Request bodies the router, end-to-end and fault tests all submit: a short job (inline) and a long one (queued)."""

SHORT = {
    "task": "claude.messages",
    "input": {"max_tokens": 60, "messages": [{"role": "user", "content": "Name one AWS region. Keep it short."}]},
}
LONG = {
    "task": "documents.summarize",
    "input": {"documents": [{"id": "a", "text": "First document. It is short."}, {"id": "b", "text": "Second one. Also short."}]},
}
