"""The evaluation as Markdown, JSON and one confusion-matrix PNG per model,
all rendered in memory, so the caller writes them only when all exist."""

import io
import json

import numpy as np


def _pct(v):
  return "—" if v is None or v != v else f"{100 * v:.2f} %"


def summary_table(models, scores):
  k = max(s["top_k"] for s in scores)
  rows = [f"| model | images | top-1 | top-{k} |", "| --- | --- | --- | --- |"]
  for m, s in zip(models, scores):
    rows.append(f"| {m.name} | {s['images']:,} | {_pct(s['top1'])} "
                f"({s['top1_correct']:,}) | {_pct(s['topk'])} |")
  return rows


def markdown(title, models, scores, agree, data, skipped, png_names):
  lines = [f"# {title}", "",
           f"Data: `{data.what}`, {len(data):,} images of "
           f"{len(data.class_names)} classes"
           + (f", {len(skipped)} unreadable skipped" if skipped else "") +
           ". Written by `//tools:evaluate`.", ""]
  lines += summary_table(models, scores)
  if len(models) > 1:
    lines += ["", "## Top-1 agreement", "",
              "| | " + " | ".join(m.name for m in models) + " |",
              "| --- |" + " --- |" * len(models)]
    for m, row in zip(models, agree):
      lines.append(f"| {m.name} | " + " | ".join(_pct(v) for v in row) + " |")
  lines += ["", "## Per class (precision / recall)", "",
            "| class | images | " + " | ".join(m.name for m in models) + " |",
            "| --- | --- |" + " --- |" * len(models)]
  for c, name in enumerate(data.class_names):
    count = scores[0]["confusion"][c]
    cells = [f"{_pct(s['precision'][c])} / {_pct(s['recall'][c])}"
             for s in scores]
    lines.append(f"| {name} | {sum(count):,} | " + " | ".join(cells) + " |")
  lines += ["", "## Confusion matrices", ""]
  for m, png in zip(models, png_names):
    lines += [f"![{m.name}]({png})", ""]
  if skipped:
    lines += ["## Skipped images", ""]
    lines += [f"- {name}: {problem}" for name, problem in
              sorted(skipped.items())[:20]]
    lines.append("")
  return "\n".join(lines)


def to_json(models, scores, agree, data, skipped):
  return json.dumps({
      "data": data.what, "images": len(data), "classes": data.class_names,
      "skipped": skipped,
      "models": [{"name": m.name, "kind": m.kind,
                  "input": [m.input_size, m.input_size, m.channels],
                  "notes": m.notes, **s} for m, s in zip(models, scores)],
      "top1_agreement": agree,
  }, indent=1) + "\n"


def confusion_png(model_name, score, class_names):
  """PNG bytes: rows are the true classes, columns the predicted ones."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  cm = np.asarray(score["confusion"])
  if not cm[:, -1].any():
    cm = cm[:, :-1]  # no prediction outside the data's classes
  columns = score["confusion_columns"][:cm.shape[1]]
  side = min(4 + 0.45 * len(class_names), 24)
  fig, ax = plt.subplots(figsize=(side + 1, side), dpi=100)
  ax.imshow(cm, cmap="Blues")
  if len(class_names) <= 30:
    ax.set_xticks(range(len(columns)), columns, rotation=90)
    ax.set_yticks(range(len(class_names)), class_names)
    limit = cm.max() / 2
    for (i, j), v in np.ndenumerate(cm):
      if v:
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                color="white" if v > limit else "black")
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(f"{model_name}: top-1 {100 * score['top1']:.2f} % of "
               f"{score['images']:,}")
  fig.tight_layout()
  buf = io.BytesIO()
  # No timestamp in the file: the same scores give the same bytes.
  fig.savefig(buf, format="png", metadata={"Software": None})
  plt.close(fig)
  return buf.getvalue()
