"""Makes tests/fixtures/cider: candidates, references and pycocoevalcap's scores for them.

Run once, with pycocoevalcap 1.2 (PyPI) and Java 17 on the machine:
    python3 -m venv /tmp/coco && /tmp/coco/bin/pip install pycocoevalcap==1.2
    /tmp/coco/bin/python tools/make_cider_fixture.py tests/fixtures/cider

It writes, in COCO's caption formats so that `racm3 metric cider` reads them unchanged:
- references.json: {"images": [{"id"}], "annotations": [{"image_id", "id", "caption"}]};
- results.json: [{"image_id", "caption"}];
- expected.json: what COCOEvalCap computes from them: the PTB-tokenized references and
  candidates (Stanford PTBTokenizer 3.4.1, lower case, punctuation removed), the CIDEr-D
  corpus score and every per-image score, and BLEU-1..4 and ROUGE-L.

The captions are emoji names (the project's own references) and edits of them that
exercise the tokenizer and the metric: case, punctuation, curly quotes, contractions,
hyphens, parentheses, repeated words, partial and wrong captions, and empty ones.
"""

import json
import os
import random
import sys

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

NAMES = [
    ("grinning face", ["grinning", "happy face"]),
    ("grinning face with smiling eyes", ["grin", "smile with eyes"]),
    ("face with tears of joy", ["joy", "laughing crying"]),
    ("smiling face with heart-eyes", ["heart_eyes", "love struck face"]),
    ("woman’s hat", ["womans_hat", "a hat for women"]),
    ("Japanese “here” button", ["koko", "here button"]),
    ("A button (blood type)", ["a", "blood type A"]),
    ("flag: United States", ["flag-us", "us flag", "American flag"]),
    ("keycap: 1", ["one", "number one key"]),
    ("T-Rex", ["t-rex", "tyrannosaurus"]),
    ("1st place medal", ["first_place_medal", "gold medal"]),
    ("one o’clock", ["clock1", "clock at one"]),
    ("man’s shoe", ["mans_shoe", "shoe"]),
    ("red apple", ["apple", "a red apple"]),
    ("green apple", ["green_apple", "apple that is green"]),
    ("pile of poo", ["poop", "shit", "hankey"]),
    ("thumbs up", ["+1", "thumbsup"]),
    ("OK hand", ["ok_hand", "okay sign"]),
    ("Statue of Liberty", ["statue_of_liberty", "liberty statue"]),
    ("piñata", ["pinata", "party toy"]),
    ("don't walk sign", ["no pedestrians", "do not walk"]),
    ("it's a cat face", ["cat", "cat's face"]),
    ("cat face", ["cat", "kitty face"]),
    ("dog face", ["dog", "puppy face"]),
    ("ice cream", ["ice_cream", "cone of ice cream"]),
    ("soft ice cream", ["icecream", "soft serve"]),
    ("shaved ice", ["shaved_ice", "ice dessert"]),
    ("hot pepper", ["chili", "spicy pepper"]),
    ("ear of corn", ["corn", "maize"]),
    ("chequered flag", ["checkered_flag", "racing flag"]),
    ("waving white flag", ["white flag", "surrender"]),
    ("rainbow flag", ["rainbow-flag", "pride flag"]),
    ("E-mail", ["email", "e-mail envelope"]),
    ("Cancer", ["cancer", "zodiac crab"]),
    ("up! button", ["up", "up button"]),
    ("cool button", ["cool", "COOL sign"]),
    ("new moon", ["new_moon", "dark moon"]),
    ("full moon face", ["full_moon_with_face", "moon with a face"]),
    ("sun with face", ["sun_with_face", "smiling sun"]),
    ("cloud with lightning and rain", ["thunder_cloud_and_rain", "storm"]),
    ("high voltage", ["zap", "lightning bolt"]),
    ("jack-o-lantern", ["jack_o_lantern", "pumpkin lantern"]),
    ("Christmas tree", ["christmas_tree", "xmas tree"]),
    ("party popper", ["tada", "celebration"]),
    ("musical notes", ["notes", "music"]),
    ("mobile phone", ["iphone", "cell phone"]),
    ("e-mail...", ["envelope", "mail."]),
    ("magnifying glass tilted left", ["mag", "search"]),
    ("locked with pen", ["lock_with_ink_pen", "pen and lock"]),
    ("Mrs. Claus", ["mrs_claus", "mother christmas"]),
    ("U.S. mailbox", ["mailbox", "post box"]),
    ("page facing up", ["page_facing_up", "document"]),
    ("ten o’clock -- night", ["clock10", "ten o'clock"]),
    ("yin yang; balance", ["yin_yang", "balance"]),
    ("question mark?", ["question", "red question mark"]),
    ("exclamation mark!", ["exclamation", "heavy exclamation mark"]),
]


# PTB's harder cases, tokenized alone and stored as probe -> tokens.
PROBES = [
    "and/or 3.5 3. a*b x&y",
    "it’s cats' can't won't isn’t o'clock",
    "[hello] {x} u.s. mrs. dr. st. etc. face. end u.s.",
    "wow!! what?! hm... dots.. a--b e.g. ok…",
    "#1 +1 100% $5 @home C++ naïve ÉCOLE",
    "'quoted' ``ticks'' “double” ‘single’",
    "A.",
    "keycap: * keycap: #",
    "flag: Côte d’Ivoire",
    "flag: St. Kitts & Nevis",
    "Trinidad & Tobago",
]


def candidate(rng, name, short, names):
    """An edited caption: the kinds of outputs a captioner writes."""
    kind = rng.randrange(9)
    words = name.split()
    if kind == 0:
        return name
    if kind == 1:
        return name.upper() + "."
    if kind == 2:
        return " ".join(words[: max(1, len(words) // 2)])
    if kind == 3:
        return " ".join(words + words[-1:] * 3)
    if kind == 4:
        return rng.choice(names)[0]
    if kind == 5:
        return f"a {short[-1]}, with ({words[0]})!"
    if kind == 6:
        return ""
    if kind == 7:
        return f"\"{name}\" isn't it's"
    return " ".join(rng.sample(words, len(words))) + " " + rng.choice(names)[0].split()[0]


def main(out):
    rng = random.Random(2023)
    images, annotations, results = [], [], []
    for image_id, (name, short) in enumerate(NAMES):
        images.append({"id": image_id, "file_name": f"{image_id}.png"})
        for caption in [name] + [s.replace("_", " ") for s in short]:
            annotations.append({"image_id": image_id, "id": len(annotations), "caption": caption})
        results.append({"image_id": image_id, "caption": candidate(rng, name, short, NAMES)})
    # Quirks worth pinning: a caption of punctuation only, and surrounding whitespace.
    results[5]["caption"] = " ... !! "
    results[9]["caption"] = "  t-rex   T-REX  "

    gts = {i["id"]: [] for i in images}
    for a in annotations:
        gts[a["image_id"]].append({"caption": a["caption"]})
    res = {r["image_id"]: [{"caption": r["caption"]}] for r in results}
    tokenizer = PTBTokenizer()
    gts_tok = tokenizer.tokenize(gts)
    res_tok = tokenizer.tokenize(res)
    cider, cider_per_image = Cider().compute_score(gts_tok, res_tok)
    bleu, bleu_per_image = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
    rouge, rouge_per_image = Rouge().compute_score(gts_tok, res_tok)
    probes_tok = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(PROBES)})
    ids = sorted(gts_tok)
    expected = {
        "made_by": "pycocoevalcap 1.2 (PTBTokenizer 3.4.1, Cider, Bleu(4), Rouge)",
        "cider": cider,
        "bleu": bleu,
        "rouge_l": rouge,
        "probes": {p: probes_tok[i][0] for i, p in enumerate(PROBES)},
        "images": [
            {
                "image_id": image_id,
                "references_tokenized": gts_tok[image_id],
                "candidate_tokenized": res_tok[image_id][0],
                "cider": float(cider_per_image[index]),
                "bleu": [float(b[index]) for b in bleu_per_image],
                "rouge_l": float(rouge_per_image[index]),
            }
            for index, image_id in enumerate(ids)
        ],
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "references.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations}, f, indent=1, ensure_ascii=False)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
    print(f"{len(images)} images, CIDEr-D {cider:.6f}, BLEU-4 {bleu[3]:.6f}, ROUGE-L {rouge:.6f}")


if __name__ == "__main__":
    main(sys.argv[1])
