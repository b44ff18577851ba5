"""html_to_text: title first, dropped elements, block breaks, <pre>, entities."""

from __future__ import annotations

from kiban.curate.readers.html import html_to_text


def test_structure() -> None:
    src = """<!DOCTYPE html><html><head><title>Debian  手引き</title>
    <style>p { color: red }</style><script>var x = "<p>no</p>";</script><meta charset="utf-8"></head>
    <body><nav>戻る</nav><h1>第1章</h1>
    <p>Debian   &amp; GNU/Linux を
       使う。&#x3042;&nbsp;&lt;tag&gt;</p>
    <ul><li>一</li><li>二</li></ul>
    <pre>line 1
  line 2</pre>
    <table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>
    <noscript>enable js</noscript><img src="x.png" alt="図1"></body></html>"""
    assert html_to_text(src) == (
        "Debian 手引き\n\n戻る\n\n第1章\n\nDebian & GNU/Linux を 使う。あ <tag>\n\n一\n二\n\n"
        "line 1\nline 2\n\na b\nc d\n\n図1\n"
    )


def test_empty_and_text_only() -> None:
    assert html_to_text("") == ""
    assert html_to_text("<script>only()</script>") == ""
    assert html_to_text("plain <b>bold</b> text") == "plain bold text\n"
