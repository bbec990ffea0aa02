"""Korean full-text search for the built book (Sphinx has none and falls back to English).

Korean attaches particles and endings to the word they follow: 커널은, 커널을, 커널의,
컨테이너와, 하이퍼바이저는, VM은. Sphinx's English splitter keeps each of those as a word of
its own, so a search for 커널 misses 커널은, and a search for 커널을 finds only 커널을.

This search language splits and stems Korean the same way in Python (the index) and in the
browser (`splitQuery` and `Stemmer` in `language_data.js`):

- split: runs of Hangul syllables and runs of other word characters are separate words, so
  `VM은` gives `vm` and `은`, `cgroup으로` gives `cgroup` and `으로`. A Hangul word that is a
  bare particle (은, 으로, 에서) or a single syllable is dropped, on both sides.
- stem: a Hangul word loses particles and common endings from its end (longest first,
  repeatedly: 컨테이너들에서는 -> 컨테이너), never below two syllables, so 속도, 결과 and 정의
  keep their last syllable. Other words get Sphinx's English (Porter) stemmer, except words
  of one or two letters, which the browser's Porter stemmer leaves alone (Python's snowball
  stemmer would turn OS into o, and a search for OS would find nothing).

Both the index and the query hold the stem, so 커널, 커널을 and 커널은 all find every page
with any of them. The rules are a short table, not a morphological analyser: a noun whose last
syllable happens to be a particle (도메인 -> 도메) is cut the same way in the index and in the
query, so it is still found. Rebuild with `--all` after changing anything here: Sphinx keeps
the old index for unchanged pages otherwise.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sphinx.application import Sphinx
from sphinx.search.en import SearchEnglish, js_porter_stemmer

HANGUL = "\uac00-\ud7a3"  # precomposed syllables 가..힣

#: Particles (josa), the copula and frequent noun + 하다/되다/시키다 endings, stripped from
#: the end. A single syllable here must rarely end a noun of three syllables or more.
PARTICLES = sorted(set("""
    이 가 을 를 은 는 의 에 와 과 도 만 로 나 랑 란 인 들 적 한 할 함 된 해 냐 씩 별
    으로 에서 에게 한테 께서 까지 부터 마다 처럼 보다 조차 마저 밖에 만큼 대로 이나 이랑 끼리
    이란 라는 이라 이며 이고 이다 이든 든지 로서 로써 으로서 으로써 로부터 으로부터 에서든
    이라는 이라고 라고 라기 이라기 입니다 이었다 였다 이에요 예요 이죠 이지만 이냐 이므로
    인가 인가요 인지 일까요
    합니다 하는 하고 하며 하면 하여 해서 했다 한다 하기 하지 하게 하거나 하므로 하면서 하세요
    했습니다 해야 되는 됩니다 되어 된다 되었다 되었습니다 시키는 시킵니다 적인 적으로
""".split()), key=lambda p: (-len(p), p))
#: A stem keeps at least this many syllables.
MIN_STEM = 2
#: How many particles/endings may be stripped from one word (컨테이너 + 들 + 에서 + 는).
MAX_STRIPS = 3

_TOKEN = re.compile(rf"[{HANGUL}]+|[^\W{HANGUL}]+")
_HANGUL_WORD = re.compile(rf"[{HANGUL}]+")
_PARTICLE_SET = frozenset(PARTICLES)


def strip_particles(word: str) -> str:
    """A Hangul word without its trailing particles/endings (at least MIN_STEM syllables)."""
    for _ in range(MAX_STRIPS):
        for particle in PARTICLES:
            if word.endswith(particle) and len(word) - len(particle) >= MIN_STEM:
                word = word[:-len(particle)]
                break
        else:
            break
    return word


def split(text: str) -> list[str]:
    """Words of `text`: Hangul runs and other word-character runs; bare particles dropped."""
    return [token for token in _TOKEN.findall(text)
            if not (_HANGUL_WORD.fullmatch(token)
                    and (len(token) < MIN_STEM or token in _PARTICLE_SET))]


JS_SPLITTER = """
/* Korean: split as book/_ext/korean_search.py `split` does. */
var splitQuery = (query) => (query.match(/%(token)s/gu) || []).filter(
  (token) => !(/^[%(hangul)s]+$/u.test(token)
               && (token.length < %(min_stem)d || KOREAN_PARTICLES.has(token))));
""" % {"token": r"[\uAC00-\uD7A3]+|(?:(?![\uAC00-\uD7A3])[\p{L}\p{N}_])+",
       "hangul": r"\uAC00-\uD7A3", "min_stem": MIN_STEM}

_PORTER = js_porter_stemmer.replace("var Stemmer = function()", "var PorterStemmer = function()")
assert _PORTER != js_porter_stemmer, "Sphinx's Porter stemmer JS changed: update korean_search"

JS_STEMMER = _PORTER + """
/* Korean: strip particles as book/_ext/korean_search.py `strip_particles` does. */
var KOREAN_PARTICLES_LONGEST_FIRST = %(particles)s;
var KOREAN_PARTICLES = new Set(KOREAN_PARTICLES_LONGEST_FIRST);
var Stemmer = function() {
  const porter = new PorterStemmer();
  const stripParticles = (word) => {
    for (let round = 0; round < %(max_strips)d; round++) {
      const particle = KOREAN_PARTICLES_LONGEST_FIRST.find(
        (p) => word.endsWith(p) && word.length - p.length >= %(min_stem)d);
      if (particle === undefined) break;
      word = word.slice(0, word.length - particle.length);
    }
    return word;
  };
  this.stemWord = (word) =>
    /^[%(hangul)s]+$/u.test(word) ? stripParticles(word) : porter.stemWord(word);
};
""" % {"particles": json.dumps(PARTICLES, ensure_ascii=False), "max_strips": MAX_STRIPS,
       "min_stem": MIN_STEM, "hangul": r"\uAC00-\uD7A3"}


#: The excerpt under each search result: Sphinx takes the first place where a *stem* occurs in
#: the page's whole main block, which begins with the title and the page's own contents list,
#: so a query with a particle (컨테이너를) showed the page's first line. This looks in the
#: article's body only (no title, contents list, sidebar or print-only copy), for the words as
#: typed first (컨테이너를), then for their stems (컨테이너), and shows the text around it.
JS_SUMMARY = """
/* Search excerpts around the match (book/_ext/korean_search.py JS_SUMMARY). */
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined") return;
  const SKIP = [".headerlink", "script", "style", "nav", "h1", ".onlyprint", ".bd-sidebar-secondary",
                ".bd-header-article", ".prev-next-area", ".bd-footer-article", ".toctree-wrapper"];
  const positionsOf = (lower, words) =>
    words.map((w) => lower.indexOf(w.toLowerCase())).filter((i) => i > -1);
  Search.makeSearchSummary = (htmlText, keywords, anchor) => {
    const doc = new DOMParser().parseFromString(htmlText, "text/html");
    const main = doc.querySelector('[role="main"]');
    if (!main) return null;
    SKIP.forEach((q) => main.querySelectorAll(q).forEach((el) => el.remove()));
    const block = (anchor && main.querySelector(anchor)) || main.querySelector("article") || main;
    const text = block.textContent.replace(/\\s+/g, " ").trim();
    if (text === "") return null;
    const lower = text.toLowerCase();
    const typed = splitQuery(new URLSearchParams(window.location.search).get("q") || "");
    const found = positionsOf(lower, typed);
    const stems = found.length ? found : positionsOf(lower, [...keywords]);
    const hit = stems.length ? Math.min(...stems) : 0;
    const start = Math.max(hit - 80, 0);
    const summary = document.createElement("p");
    summary.classList.add("context");
    summary.textContent = (start ? "..." : "") + text.substr(start, 240).trim() +
      (start + 240 < text.length ? "..." : "");
    return summary;
  };
});
"""


class SearchKorean(SearchEnglish):
    """Korean (with English words in between): particle-stripping stems, Porter for the rest."""

    lang = "ko"
    language_name = "Korean"
    js_splitter_code = JS_SPLITTER
    js_stemmer_code = JS_STEMMER + JS_SUMMARY

    def split(self, input: str) -> list[str]:
        return split(input)

    def stem(self, word: str) -> str:
        if _HANGUL_WORD.fullmatch(word):
            return strip_particles(word)
        if len(word) < 3:  # as the browser's Porter stemmer (snowball's makes "os" "o")
            return word.lower()
        return super().stem(word)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_search_language(SearchKorean)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
