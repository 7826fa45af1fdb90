"""The stylesheet and Jinja2 template of rampart's self-contained HTML reports.

Kept apart from the builder (``html_report.py``) so the Python reads as Python. The template
only places text the builder has already formatted; Jinja2 escapes every string in it, so a
hostile caption or label shows as text and never runs. Stable ``data-testid`` attributes
name the key elements for tests and scripts.
"""

from __future__ import annotations

CSS = """
:root {
  --fg: #1f2328; --muted: #59636e; --line: #d8dee4; --soft: #f6f8fa; --bg: #ffffff;
  --accent: #3b4cca;
  --pass: #1a7f37; --pass-bg: #dafbe1; --warn: #9a6700; --warn-bg: #fff8c5;
  --fail: #cf222e; --fail-bg: #ffebe9; --info: #0969da; --info-bg: #ddf4ff;
  color-scheme: light;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
        "Noto Sans", "Liberation Sans", "DejaVu Sans", sans-serif;
}
.page { max-width: 1080px; margin: 0 auto; padding: 28px 32px 40px; }
code, pre, .mono {
  font-family: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono",
               "DejaVu Sans Mono", monospace;
  font-size: 0.88em;
}
a { color: var(--accent); }
h1, h2, h3, h4 { line-height: 1.25; margin: 0; }
h1 { font-size: 1.85rem; font-weight: 650; letter-spacing: -0.01em; }
h2 { font-size: 1.3rem; font-weight: 620; margin-bottom: 12px; }
h3 { font-size: 1.08rem; font-weight: 620; margin: 18px 0 10px; }
h4, h5, h6 { font-size: 1rem; font-weight: 620; margin: 14px 0 8px; }
p { margin: 0 0 10px; }

/* header */
.report-header { border-bottom: 1px solid var(--line); padding-bottom: 18px; margin-bottom: 8px; }
.brand {
  display: inline-block; font-size: 0.75rem; font-weight: 700; letter-spacing: 0.12em;
  text-transform: uppercase; color: var(--accent); margin-bottom: 6px;
}
.subtitle { color: var(--muted); font-size: 1.05rem; margin: 6px 0 0; }
.meta { color: var(--muted); font-size: 0.85rem; margin-top: 10px; }
.meta span + span::before { content: "·"; margin: 0 8px; color: var(--line); }
.facts { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 12px; padding: 0; list-style: none; }
.facts li {
  background: var(--soft); border: 1px solid var(--line); border-radius: 999px;
  padding: 2px 10px; font-size: 0.82rem;
}
.facts .k { color: var(--muted); margin-right: 4px; }
.headline { margin-top: 16px; }

/* table of contents */
.toc { font-size: 0.86rem; padding: 10px 0 4px; }
.toc ol { display: flex; flex-wrap: wrap; gap: 4px 18px; list-style: none; margin: 0; padding: 0; }
.toc a { color: var(--muted); text-decoration: none; }
.toc a:hover { color: var(--accent); text-decoration: underline; }

/* sections */
section.report-section { padding: 22px 0 6px; border-top: 1px solid var(--line); margin-top: 16px; }
section.report-section:first-of-type { border-top: none; }
.intro { color: var(--muted); max-width: 72ch; }
.subsection { margin-top: 10px; }
details.subsection > summary { cursor: pointer; list-style-position: inside; }
details.subsection > summary h3 { display: inline; }
.note {
  border-left: 3px solid var(--line); background: var(--soft); padding: 8px 12px;
  border-radius: 0 6px 6px 0; margin: 10px 0; font-size: 0.92rem;
}
.note-warn { border-left-color: var(--warn); background: var(--warn-bg); }
.note-fail { border-left-color: var(--fail); background: var(--fail-bg); }
.note-pass { border-left-color: var(--pass); background: var(--pass-bg); }
.note-info { border-left-color: var(--info); background: var(--info-bg); }
pre {
  background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; overflow-x: auto; white-space: pre-wrap; word-break: break-word;
}
.empty { color: var(--muted); font-style: italic; }

/* metrics */
.metrics {
  display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
  margin: 6px 0 16px;
}
.metric { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.metric-value {
  font-size: 1.65rem; font-weight: 650; font-variant-numeric: tabular-nums; line-height: 1.2;
}
.metric-label { color: var(--muted); font-size: 0.85rem; }
.metric-hint { color: var(--muted); font-size: 0.78rem; margin-top: 2px; }
.metric.tone-pass { border-top: 3px solid var(--pass); }
.metric.tone-warn { border-top: 3px solid var(--warn); }
.metric.tone-fail { border-top: 3px solid var(--fail); }
.metric.tone-info { border-top: 3px solid var(--info); }

/* tables */
.table-wrap { overflow-x: auto; margin: 6px 0 16px; }
table { border-collapse: collapse; font-size: 0.9rem; font-variant-numeric: tabular-nums; }
table.data { width: 100%; }
caption {
  caption-side: top; text-align: left; color: var(--muted); font-size: 0.85rem;
  padding-bottom: 6px;
}
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th {
  background: var(--soft); font-weight: 600; font-size: 0.82rem; color: var(--muted);
  border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap;
}
tbody tr:last-child td, tbody tr:last-child th { border-bottom: none; }
table.data {
  border: 1px solid var(--line); border-radius: 8px; border-collapse: separate;
  border-spacing: 0;
}
table.data thead th:first-child { border-top-left-radius: 8px; }
table.data thead th:last-child { border-top-right-radius: 8px; }
table.kv th {
  text-align: left; font-weight: 500; color: var(--muted); padding-left: 0; white-space: nowrap;
}
table.kv td { padding-left: 18px; }
.al-right { text-align: right !important; white-space: nowrap; }
.al-center { text-align: center !important; }
.al-left { text-align: left; }

/* verdicts */
.badge {
  display: inline-flex; align-items: center; gap: 5px; border-radius: 999px;
  padding: 1px 10px; font-size: 0.75rem; font-weight: 700; letter-spacing: 0.05em;
  text-transform: uppercase; white-space: nowrap; border: 1px solid transparent;
}
.badge .sym { text-transform: none; font-weight: 800; }
.badge-pass { color: var(--pass); background: var(--pass-bg); border-color: #aceebb; }
.badge-warn { color: var(--warn); background: var(--warn-bg); border-color: #f5e0a0; }
.badge-fail { color: var(--fail); background: var(--fail-bg); border-color: #ffcecb; }
.badge-info { color: var(--info); background: var(--info-bg); border-color: #b6e3ff; }
.verdicts { display: flex; flex-direction: column; gap: 8px; margin: 6px 0 16px; }
.verdict {
  display: grid; grid-template-columns: 84px 1fr; gap: 12px; align-items: start;
  border: 1px solid var(--line); border-left-width: 4px; border-radius: 6px; padding: 10px 14px;
}
.verdict .badge { justify-self: start; margin-top: 2px; }
.verdict-pass { border-left-color: var(--pass); }
.verdict-warn { border-left-color: var(--warn); }
.verdict-fail { border-left-color: var(--fail); }
.verdict-info { border-left-color: var(--info); }
.verdict-title { font-weight: 600; }
.verdict-text { color: var(--fg); margin: 2px 0 0; font-size: 0.92rem; }
.verdict-detail { color: var(--muted); font-size: 0.82rem; margin: 4px 0 0; }

/* figures and galleries */
figure { margin: 8px 0 18px; }
figure.plot img { display: block; max-width: 100%; height: auto; }
.figure-row {
  display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 18px;
  align-items: start;
}
.figure-row figure { margin: 8px 0; }
figcaption { color: var(--muted); font-size: 0.85rem; margin-top: 6px; max-width: 80ch; }
.gallery {
  display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--tile, 150px), 1fr));
  gap: 12px; margin: 6px 0 18px;
}
.gallery-item {
  margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 10px;
  background: var(--bg);
}
.panels { display: flex; gap: 8px; justify-content: center; }
.panel { display: flex; flex-direction: column; align-items: center; min-width: 0; }
.panel img {
  display: block; max-width: 100%; height: auto; image-rendering: pixelated;
  border: 1px solid var(--line); border-radius: 3px; background: #808080;
}
.panel-label { font-size: 0.72rem; color: var(--muted); margin-top: 3px; white-space: nowrap; }
.gallery-item figcaption {
  text-align: center; color: var(--fg); font-weight: 600; margin-top: 6px;
}
.gallery-item .detail { display: block; font-weight: 400; color: var(--muted); font-size: 0.78rem; }

/* environment and footer */
.env {
  display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 4px 18px;
  margin: 0; font-size: 0.85rem;
}
.env div {
  display: flex; gap: 8px; border-bottom: 1px dotted var(--line); padding: 3px 0; min-width: 0;
}
.env dt { color: var(--muted); flex: none; }
.env dd { margin: 0; overflow-wrap: anywhere; }
footer {
  color: var(--muted); font-size: 0.8rem; margin-top: 28px; border-top: 1px solid var(--line);
  padding-top: 10px;
}

@page { margin: 14mm; }
@media print {
  body { font-size: 11pt; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .page { max-width: none; padding: 0; }
  .toc { display: none; }
  a { color: inherit; text-decoration: none; }
  figure, table, .verdict, .metric, .gallery-item, pre { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  details.subsection > summary { list-style: none; }
  details.subsection::details-content { content-visibility: visible; display: contents; }
}
@media (max-width: 640px) {
  .page { padding: 18px 14px; }
  .verdict { grid-template-columns: 1fr; }
}
"""

# The page. ``section`` is a recursive macro so subsections nest to any depth.
PAGE = """<!doctype html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="rampart {{ version }}">
<meta name="referrer" content="no-referrer">
<title>{{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
<div class="page">
{%- macro badge(v) -%}
<span class="badge badge-{{ v.verdict }}" data-testid="badge"><span class="sym"
  aria-hidden="true">{{ v.symbol }}</span>{{ v.verdict }}</span>
{%- endmacro %}
{%- macro verdict(v) -%}
<div class="verdict verdict-{{ v.verdict }}" data-testid="verdict" data-verdict="{{ v.verdict }}">
  {{ badge(v) }}
  <div>
    <div class="verdict-title">{{ v.title }}</div>
    {%- if v.explanation %}<p class="verdict-text">{{ v.explanation }}</p>{% endif %}
    {%- if v.detail %}<p class="verdict-detail">{{ v.detail }}</p>{% endif %}
  </div>
</div>
{%- endmacro %}
{%- macro figure(f) -%}
<figure class="plot" data-testid="figure"{% if f.name %} data-name="{{ f.name }}"{% endif %}>
  <img src="{{ f.src }}" width="{{ f.width }}" height="{{ f.height }}" alt="{{ f.alt }}">
  {%- if f.caption %}<figcaption>{{ f.caption }}</figcaption>{% endif %}
</figure>
{%- endmacro %}
{%- macro block(b) -%}
{%- if b.kind == "text" -%}
<p{% if b.muted %} class="intro"{% endif %}>{{ b.text }}</p>
{%- elif b.kind == "note" -%}
<div class="note note-{{ b.tone }}" data-testid="note">{{ b.text }}</div>
{%- elif b.kind == "code" -%}
<pre data-testid="code"><code>{{ b.text }}</code></pre>
{%- elif b.kind == "metrics" -%}
<div class="metrics" data-testid="metrics">
{%- for m in b.items %}
  <div class="metric{% if m.tone %} tone-{{ m.tone }}{% endif %}" data-testid="metric"
       data-key="{{ m.key }}">
    <div class="metric-value">{{ m.value }}</div>
    <div class="metric-label">{{ m.label }}</div>
    {%- if m.hint %}<div class="metric-hint">{{ m.hint }}</div>{% endif %}
  </div>
{%- endfor %}
</div>
{%- elif b.kind == "key_values" -%}
<div class="table-wrap"><table class="kv" data-testid="kv-table"
  {%- if b.name %} data-name="{{ b.name }}"{% endif %}>
{%- if b.caption %}<caption>{{ b.caption }}</caption>{% endif %}
<tbody>
{%- for k, v in b.items %}
<tr><th scope="row">{{ k }}</th><td>{{ v }}</td></tr>
{%- endfor %}
</tbody></table></div>
{%- elif b.kind == "table" -%}
<div class="table-wrap"><table class="data" data-testid="data-table"
  {%- if b.name %} data-name="{{ b.name }}"{% endif %}>
{%- if b.caption %}<caption>{{ b.caption }}</caption>{% endif %}
<thead><tr>
{%- for c in b.columns -%}
<th scope="col" class="al-{{ c.align }}" data-key="{{ c.key }}">{{ c.heading }}</th>
{%- endfor -%}
</tr></thead>
<tbody>
{%- for row in b.rows %}
<tr>{% for cell in row %}<td class="al-{{ cell.align }}">{{ cell.text }}</td>{% endfor %}</tr>
{%- else %}
<tr><td class="empty" colspan="{{ b.columns|length or 1 }}">{{ b.empty }}</td></tr>
{%- endfor %}
</tbody></table></div>
{%- elif b.kind == "verdicts" -%}
<div class="verdicts" data-testid="verdicts">
{%- for v in b.items %}
{{ verdict(v) }}
{%- endfor %}
</div>
{%- elif b.kind == "figure" -%}
{{ figure(b) }}
{%- elif b.kind == "figures" -%}
<div class="figure-row" data-testid="figure-row">
{%- for f in b.items %}
{{ figure(f) }}
{%- endfor %}
</div>
{%- elif b.kind == "gallery" -%}
{%- if b.caption %}<p class="intro">{{ b.caption }}</p>{% endif %}
<div class="gallery" data-testid="gallery" style="--tile: {{ b.tile_width }}px"
  {%- if b.name %} data-name="{{ b.name }}"{% endif %}>
{%- for item in b.items %}
  <figure class="gallery-item" data-testid="gallery-item">
    <div class="panels">
    {%- for p in item.panels %}
      <div class="panel">
        <img src="{{ p.src }}" width="{{ p.width }}" height="{{ p.height }}" alt="{{ p.alt }}"
             title="{{ p.alt }}">
        <span class="panel-label">{{ p.label }}</span>
      </div>
    {%- endfor %}
    </div>
    {%- if item.caption or item.detail %}
    <figcaption>{{ item.caption }}
      {%- if item.detail %}<span class="detail">{{ item.detail }}</span>{% endif -%}
    </figcaption>
    {%- endif %}
  </figure>
{%- else %}
  <p class="empty">{{ b.empty }}</p>
{%- endfor %}
</div>
{%- elif b.kind == "environment" -%}
<dl class="env" data-testid="environment">
{%- for k, v in b.items %}
  <div data-key="{{ k }}"><dt>{{ k }}</dt><dd class="mono">{{ v }}</dd></div>
{%- endfor %}
</dl>
{%- endif -%}
{%- endmacro %}
{%- macro section(s) -%}
{%- if s.level == 2 %}
<section class="report-section" id="{{ s.id }}" data-testid="section-{{ s.id }}">
  <h2>{{ s.title }}</h2>
{%- elif s.collapsed %}
<details class="subsection" id="{{ s.id }}" data-testid="section-{{ s.id }}"
  {%- if s.open %} open{% endif %}>
  <summary><h{{ s.level }}>{{ s.title }}</h{{ s.level }}></summary>
{%- else %}
<div class="subsection" id="{{ s.id }}" data-testid="section-{{ s.id }}">
  <h{{ s.level }}>{{ s.title }}</h{{ s.level }}>
{%- endif %}
  {%- if s.intro %}
  <p class="intro">{{ s.intro }}</p>
  {%- endif %}
  {%- for b in s.blocks %}
  {%- if b.kind == "section" %}
  {{ section(b) }}
  {%- else %}
  {{ block(b) }}
  {%- endif %}
  {%- endfor %}
{%- if s.level == 2 %}
</section>
{%- elif s.collapsed %}
</details>
{%- else %}
</div>
{%- endif %}
{%- endmacro %}
<header class="report-header" id="report-header" data-testid="report-header">
  <div class="brand">rampart report</div>
  <h1 data-testid="report-title">{{ title }}</h1>
  {%- if subtitle %}
  <p class="subtitle" data-testid="report-subtitle">{{ subtitle }}</p>
  {%- endif %}
  <div class="meta">
    <span data-testid="report-timestamp"><time
      datetime="{{ created_iso }}">{{ created_text }}</time></span>
    <span data-testid="rampart-version">rampart {{ version }}</span>
  </div>
  {%- if facts %}
  <ul class="facts" data-testid="report-facts">
  {%- for k, v in facts %}
    <li><span class="k">{{ k }}</span>{{ v }}</li>
  {%- endfor %}
  </ul>
  {%- endif %}
  {%- if headline %}
  <div class="headline" data-testid="report-verdict">{{ verdict(headline) }}</div>
  {%- endif %}
</header>
{%- if toc|length > 1 %}
<nav class="toc" data-testid="report-toc" aria-label="Contents"><ol>
{%- for id, text in toc %}<li><a href="#{{ id }}">{{ text }}</a></li>{% endfor -%}
</ol></nav>
{%- endif %}
<main>
{%- for s in sections %}
{{ section(s) }}
{%- endfor %}
</main>
<footer data-testid="report-footer">
  Generated by rampart {{ version }} on {{ created_text }}.
  This page is self-contained: it loads nothing from the network.
</footer>
</div>
</body>
</html>
"""
