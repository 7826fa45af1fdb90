"""A builder for one self-contained HTML report page.

A page has a header (title, subtitle, timestamp, rampart version, a few facts and an
optional headline verdict), sections with stable ids, and an environment block. Each
section collects blocks in the order they are added: text, notes, headline metrics,
key-value tables, data tables, verdict badges, figures, image galleries, code and
subsections. Everything is inline (CSS, images as ``data:`` URIs), so the file can be
mailed, archived or attached to a CI run and still open anywhere, offline. All text is
escaped by Jinja2, so labels and captions taken from users' files cannot inject markup.

    page = HtmlReport("rampart audit: mnist-cnn", subtitle="suite standard · 1,000 samples")
    page.section("summary", "Summary").metrics({"clean accuracy": 0.98}, formats="pct")
    page.section("threats", "Threats").table(rows, formats={"robust_accuracy": "pct"})
    page.environment(seed=0)
    page.write("reports/audit/index.html")
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
from markupsafe import Markup

from rampart.errors import ConfigError
from rampart.evaluate.atomic import write_text_atomic
from rampart.evaluate.gallery import GalleryItem
from rampart.evaluate.html_templates import CSS, PAGE
from rampart.evaluate.png import Png
from rampart.evaluate.report_format import (
    Column,
    Format,
    check_verdict,
    format_value,
    resolve_columns,
)

SYMBOLS = {"pass": "✓", "warn": "!", "fail": "✗", "info": "ℹ"}
_ID = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class Verdict:
    """A judgement shown as a coloured badge with a plain-language explanation."""

    verdict: str  # pass | warn | fail | info
    title: str
    explanation: str = ""
    detail: str = ""

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.verdict]

    @classmethod
    def of(cls, item: Verdict | Mapping[str, Any]) -> Verdict:
        """A Verdict from itself or a mapping with ``verdict`` and ``title`` (or ``name``),
        and optionally ``explanation`` and ``detail``; other keys are ignored."""
        if isinstance(item, Verdict):
            return cls(check_verdict(item.verdict), item.title, item.explanation, item.detail)
        if not isinstance(item, Mapping) or "verdict" not in item:
            raise ConfigError(f"a verdict must be a Verdict or a mapping with a 'verdict' key; "
                              f"got {item!r:.80}.")
        title = item.get("title") or item.get("name") or ""
        return cls(check_verdict(item["verdict"]), str(title),
                   str(item.get("explanation") or ""), str(item.get("detail") or ""))


@dataclass(frozen=True)
class Metric:
    """One headline number: a big value over a short label, with an optional hint and tone."""

    label: str
    value: Any
    fmt: Format = "auto"
    hint: str = ""
    tone: str | None = None  # pass | warn | fail | info: a coloured top edge
    key: str = ""


@dataclass
class Section:
    """A titled part of the page; its methods add blocks and return the section (chainable)."""

    id: str
    title: str
    level: int
    intro: str = ""
    collapsed: bool = False
    open: bool = False
    blocks: list[Any] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set, repr=False)
    kind: str = "section"

    # ------------------------------------------------------------------ text
    def text(self, text: str, *, muted: bool = False) -> Section:
        """A paragraph of plain text (muted: the grey style of an introduction)."""
        return self._add("text", text=str(text), muted=muted)

    def note(self, text: str, tone: str = "info") -> Section:
        """A highlighted remark; ``tone`` is pass, warn, fail or info."""
        return self._add("note", text=str(text), tone=check_verdict(tone))

    def code(self, text: str) -> Section:
        """Preformatted text: a command line, a config file, a traceback."""
        return self._add("code", text=str(text))

    # ------------------------------------------------------------------ numbers
    def metrics(
        self,
        values: Mapping[str, Any] | Sequence[Metric],
        formats: Format | Mapping[str, Format] | None = None,
    ) -> Section:
        """Headline numbers as cards: ``{"clean accuracy": 0.98}`` or a list of ``Metric``.
        ``formats`` is one format for all values or one per label."""
        if isinstance(values, Mapping):
            items = [Metric(str(k), v) for k, v in values.items()]
        else:
            items = [m if isinstance(m, Metric) else _bad_metric(m) for m in values]
        out = []
        for m in items:
            fmt = _pick(formats, m.label, m.fmt)
            tone = check_verdict(m.tone) if m.tone else None
            out.append({"label": m.label, "value": format_value(m.value, fmt), "hint": m.hint,
                        "tone": tone, "key": m.key or slug(m.label)})
        return self._add("metrics", items=out)

    def key_values(
        self,
        values: Mapping[str, Any],
        formats: Format | Mapping[str, Format] | None = None,
        *,
        caption: str = "",
        name: str = "",
    ) -> Section:
        """A two-column table of labelled values (a threat model, settings, timings)."""
        if not isinstance(values, Mapping):
            raise ConfigError("key_values needs a mapping of label -> value.")
        if isinstance(formats, Mapping):
            _known(formats, values, "key_values")
        items = [(str(k), format_value(v, _pick(formats, k, "auto"))) for k, v in values.items()]
        return self._add("key_values", items=items, caption=caption, name=name)

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str | Column] | Mapping[str, str] | None = None,
        formats: Mapping[str, Format] | None = None,
        *,
        caption: str = "",
        name: str = "",
        empty: str = "Nothing to show.",
    ) -> Section:
        """A data table from a list of dicts (one per row). ``columns`` picks and orders the
        keys (or maps key -> heading); ``formats`` sets a format per key, e.g. ``"pct"``."""
        rows = list(rows)
        if not all(isinstance(r, Mapping) for r in rows):
            raise ConfigError("table rows must be mappings (one dict per row).")
        cols = resolve_columns(rows, columns, formats)
        cells = [[{"text": format_value(row.get(c.key), c.fmt), "align": c.align} for c in cols]
                 for row in rows]
        heads = [{"key": c.key, "heading": c.heading, "align": c.align} for c in cols]
        return self._add("table", columns=heads, rows=cells, caption=caption, name=name,
                         empty=empty)

    # ------------------------------------------------------------------ judgements
    def verdict(self, verdict: str, title: str, explanation: str = "", detail: str = "") -> Section:
        """One verdict badge (pass / warn / fail / info) with what it means in plain words."""
        return self.verdicts([Verdict(verdict, title, explanation, detail)])

    def verdicts(self, items: Sequence[Verdict | Mapping[str, Any]]) -> Section:
        """Several verdicts, e.g. a list of diagnostics dicts with verdict, title, explanation."""
        return self._add("verdicts", items=[Verdict.of(v) for v in items])

    # ------------------------------------------------------------------ pictures
    def figure(
        self,
        image: Png | bytes | str,
        caption: str = "",
        *,
        alt: str = "",
        width: int | None = None,
        name: str = "",
    ) -> Section:
        """A picture (a plot from ``figures.py``, PNG bytes or a PNG data URI) with a caption.
        ``width`` sets the display width in CSS pixels (the height follows)."""
        return self._add("figure", **_figure(image, caption, alt, width, name))

    def figures(self, items: Sequence[Png | bytes | str | tuple[Any, str]]) -> Section:
        """Several pictures side by side (they wrap on narrow screens); each item is an image
        or an ``(image, caption)`` pair."""
        figs = []
        for item in items:
            image, caption = item if isinstance(item, tuple) else (item, "")
            figs.append(_figure(image, caption, None, None, ""))
        return self._add("figures", items=figs)

    def gallery(
        self,
        items: Sequence[GalleryItem],
        *,
        caption: str = "",
        name: str = "",
        empty: str = "No images to show.",
    ) -> Section:
        """Image cards from ``gallery.py`` (adversarial triplets or flagged samples)."""
        cards, widest = [], 0
        for item in items:
            if not isinstance(item, GalleryItem):
                raise ConfigError("gallery items must be GalleryItem objects; build them with "
                                  "rampart.evaluate.gallery (adversarial_gallery, "
                                  "sample_gallery).")
            panels = [{"src": p.image.data_uri, "width": p.image.width,
                       "height": p.image.height, "label": p.label, "alt": p.alt or p.label}
                      for p in item.panels]
            widest = max(widest, sum(p["width"] for p in panels) + 8 * (len(panels) - 1))
            cards.append({"panels": panels, "caption": item.caption, "detail": item.detail})
        return self._add("gallery", items=cards, caption=caption, name=name, empty=empty,
                         tile_width=max(120, widest + 22))

    # ------------------------------------------------------------------ structure
    def subsection(
        self,
        id: str,
        title: str,
        intro: str = "",
        *,
        collapsed: bool = False,
        open: bool = False,
    ) -> Section:
        """A nested section (returned, so you add blocks to it). ``collapsed`` puts it in a
        ``<details>`` element that readers expand; ``open`` starts it expanded."""
        child = Section(_new_id(id, self._ids), str(title), min(self.level + 1, 6), str(intro),
                        collapsed, open, _ids=self._ids)
        self.blocks.append(child)
        return child

    def _add(self, kind: str, **data: Any) -> Section:
        self.blocks.append(SimpleNamespace(kind=kind, **data))
        return self


class HtmlReport:
    """One self-contained report page; add sections, then ``render()`` or ``write(path)``."""

    def __init__(
        self,
        title: str,
        subtitle: str = "",
        *,
        facts: Mapping[str, Any] | None = None,
        created_at: datetime | str | None = None,
        version: str | None = None,
        lang: str = "en",
    ) -> None:
        self.title = str(title)
        self.subtitle = str(subtitle)
        self.facts = dict(facts or {})
        self.created_at = created_at if created_at is not None else datetime.now(UTC)
        self.version = version
        self.lang = lang
        self.sections: list[Section] = []
        self._headline: Verdict | None = None
        self._ids: set[str] = {"report-header"}

    def section(self, id: str, title: str, intro: str = "") -> Section:
        """A new top-level section with a stable ``id`` (lower case, digits, ``-``, ``_``)."""
        sec = Section(_new_id(id, self._ids), str(title), 2, str(intro), _ids=self._ids)
        self.sections.append(sec)
        return sec

    def headline(self, verdict: str, title: str, explanation: str = "") -> HtmlReport:
        """The page's overall verdict, shown in the header."""
        self._headline = Verdict(check_verdict(verdict), str(title), str(explanation))
        return self

    def environment(
        self,
        info: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        device: Any = None,
        title: str = "Environment",
    ) -> Section:
        """The ``environment`` section: where and with what the report was made. Without
        ``info`` it is collected here (python, torch, platform, CPU/GPU, device, seed)."""
        if info is None:
            from rampart.evaluate.environment import collect

            info = collect(seed=seed, device=device)
        elif seed is not None or device is not None:
            info = {**info, **({"seed": seed} if seed is not None else {}),
                    **({"device": str(device)} if device is not None else {})}
        sec = self.section("environment", title)
        sec._add("environment", items=[(str(k), format_value(v, "text"))
                                      for k, v in info.items()])
        return sec

    # ------------------------------------------------------------------ output
    def render(self) -> str:
        """The whole page as an HTML string."""
        created_iso, created_text = _timestamp(self.created_at)
        version = self.version or _rampart_version()
        return _template().render(
            lang=self.lang, title=self.title, subtitle=self.subtitle, version=version,
            css=Markup(CSS), created_iso=created_iso, created_text=created_text,
            facts=[(str(k), format_value(v)) for k, v in self.facts.items()],
            headline=self._headline, sections=self.sections,
            toc=[(s.id, s.title) for s in self.sections],
        )

    def write(self, path: str | Path) -> Path:
        """Render and write the page atomically; returns the path."""
        return write_text_atomic(path, self.render())


# ---------------------------------------------------------------------- helpers
@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.from_string(PAGE)


def _rampart_version() -> str:
    import rampart

    return str(rampart.__version__)


def _timestamp(value: datetime | str) -> tuple[str, str]:
    if isinstance(value, str):
        try:  # an ISO timestamp, as the JSON reports keep it, reads like a datetime
            value = datetime.fromisoformat(value)
        except ValueError:
            return value, value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ"), value.strftime("%Y-%m-%d %H:%M UTC")


def _new_id(id: str, taken: set[str]) -> str:
    if not isinstance(id, str) or not _ID.match(id):
        raise ConfigError(f"section id {id!r} is not usable as an anchor; use lower-case "
                          "letters, digits, '-' and '_', starting with a letter.")
    if id in taken:
        raise ConfigError(f"section id {id!r} is used twice on this page; ids must be unique.")
    taken.add(id)
    return id


def slug(text: str, prefix: str = "s") -> str:
    """A section id made from any text: ``"linf@0.3"`` -> ``"linf-0-3"`` (``prefix`` is put
    in front when the text does not start with a letter)."""
    out = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return out if out[:1].isalpha() else f"{prefix}-{out}".rstrip("-")


def _pick(formats: Format | Mapping[str, Format] | None, key: Any, default: Format) -> Format:
    if formats is None:
        return default
    if isinstance(formats, Mapping):
        return formats.get(key, default)
    return formats


def _known(formats: Mapping[str, Format], values: Mapping[str, Any], where: str) -> None:
    unknown = set(formats) - set(values)
    if unknown:
        raise ConfigError(f"{where}: formats given for keys that are not there: "
                          f"{', '.join(sorted(map(str, unknown)))}.")


def _bad_metric(item: Any) -> Metric:
    raise ConfigError(f"metrics takes a mapping of label -> value or a list of Metric; "
                      f"got {item!r:.60}.")


def _figure(image: Any, caption: str, alt: str | None, width: int | None,
            name: str) -> dict[str, Any]:
    png = _as_png(image)
    w, h = png.width, png.height
    if width is not None:
        w, h = int(width), max(1, round(png.height * int(width) / png.width))
    return {"src": png.data_uri, "width": w, "height": h, "alt": alt or caption or "figure",
            "caption": str(caption), "name": name}


def _as_png(image: Png | bytes | str) -> Png:
    if isinstance(image, Png):
        return image
    if isinstance(image, bytes | bytearray):
        return Png.from_bytes(bytes(image))
    if isinstance(image, str):
        return Png.from_data_uri(image)
    raise ConfigError(f"a figure must be a Png, PNG bytes or a PNG data URI; got "
                      f"{type(image).__name__}.")
