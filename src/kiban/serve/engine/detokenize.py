"""Token ids in, text out as it becomes final: never half a UTF-8 character, never a stop string.

    ids ─▶ decode ids[prefix:] ─▶ text past decode(ids[prefix:read]) ─▶ complete? (no trailing U+FFFD)
                                                                          │ yes: prefix, read = read, len(ids)
                                                                          ▼
                                      held text ─▶ stop string in it?  cut before it; stopped
                                                   else emit all but the longest tail that could
                                                   still begin a stop string

Decoding a window rather than one token at a time is vLLM's and TGI's `prefix_offset` /
`read_offset` scheme: a token's text depends on its neighbours (byte-fallback pieces such as
`<0xE3>` only make a character together; the decoder strips the leading space of the whole
text), and a short window of tokens already emitted gives that context at O(window) per token.

    >>> from kiban.tokenizer.llama_style import build_tokenizer
    >>> tok = build_tokenizer(["▁", "a", "▁a"], [("▁", "a")])
    >>> d = Detokenizer(tok)
    >>> [d.push(i) for i in tok.encode("a日", add_special_tokens=False).ids]  # 日 = <0xE6><0x97><0xA5>
    ['a', '', '', '日']

The chunks concatenated equal `tokenizer.decode(ids)` (cut before the first stop string) whenever
byte-fallback runs are valid UTF-8. A run the model leaves invalid comes out as U+FFFD after the
valid characters already sent; `tokenizers` would instead turn the whole run, sent characters
included, into U+FFFD, which a stream cannot take back.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer

REPLACEMENT = "\ufffd"  # what the decoder shows for bytes that do not (yet) make a character


class Detokenizer:
    """Incremental decode of one request's generated ids, with stop strings.

    `push(id)` returns the text that became final; `flush()` at the end returns the rest.
    After a stop string, `stopped` is True and nothing more comes out.
    """

    def __init__(
        self, tokenizer: Tokenizer, *, stop: Sequence[str] = (), context: Sequence[int] = ()
    ) -> None:
        """`context`: the last few prompt ids, decoded with the output but never emitted, so the
        first generated token keeps its leading space ("▁Paris" after "of" is " Paris", as in vLLM;
        decoded alone, a Metaspace decoder strips it)."""
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]  # an empty stop string would match before any text
        self.ids: list[int] = list(context)  # the context, then the generated ids
        if self.ids and self._decode(self.ids).endswith(REPLACEMENT):
            self.ids = []  # a prompt that ends mid-character: no context rather than a wrong one
        self._n_context = len(self.ids)
        self.stopped = False
        self._prefix = 0  # ids[prefix:read]: tokens already emitted, decoded again for context
        self._read = len(self.ids)  # ids[read:]: tokens whose text is not out yet
        self._prefix_text = self._decode(self.ids)  # decode(ids[prefix:read]), kept between calls
        self._held = ""  # final text not emitted yet because it might begin a stop string

    @property
    def generated(self) -> list[int]:
        return self.ids[self._n_context :]

    def push(self, token_id: int) -> str:
        """Add one generated id; return the text that is now safe to send (often "")."""
        if self.stopped:
            raise RuntimeError("push after a stop string ended the text")
        self.ids.append(token_id)
        full = self._decode(self.ids[self._prefix :])
        # No new text (a special token, a lone "▁" the decoder strips) or an unfinished character:
        # wait, and keep the window where it is so the next decode still has the context.
        if len(full) <= len(self._prefix_text) or full.endswith(REPLACEMENT):
            return ""
        new = full[len(self._prefix_text) :]
        self._prefix, self._read = self._read, len(self.ids)
        self._prefix_text = self._decode(self.ids[self._prefix : self._read])
        return self._release(new, final=False)

    def flush(self) -> str:
        """End of the request: everything still pending (incomplete bytes come out as U+FFFD)."""
        if self.stopped:
            return ""
        new = ""
        if self._read < len(self.ids):
            new = self._decode(self.ids[self._prefix :])[len(self._prefix_text) :]
            self._prefix = self._read = len(self.ids)
            self._prefix_text = ""
        return self._release(new, final=True)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _release(self, new: str, *, final: bool) -> str:
        """Move `new` into the held text; return what can go out now."""
        text = self._held + new
        # A stop string can only begin in the held text: anything emitted before was checked not
        # to be the start of one (see `_unsafe_tail`), so searching `text` finds the first one.
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = 0 if final else _unsafe_tail(text, self.stop)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]


def _unsafe_tail(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string.

    >>> _unsafe_tail("ラーメンで", ["です。", "\\n\\n"])
    1
    """
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
