#!/usr/bin/env bash
# The kiban demo: one stage per step, each writing an artifact directory under out/demo/.
# Usage: scripts/demo.sh [DEBIAN_DOC_PACKAGE...]      (DOCS=/path/to/folder to curate your own documents)
# KIBAN_DEMO_STEPS=1 stops after curation; KIBAN_DEMO_TRAIN_STEPS=N shortens training.
set -euo pipefail
cd "$(dirname "$0")/.."
KIBAN=.venv/bin/kiban
OUT="${KIBAN_DEMO_OUT:-out/demo}"
LAST_STEP="${KIBAN_DEMO_STEPS:-9}"
mkdir -p "$OUT"

echo "== step 1/9: curate real Japanese text into a corpus with provenance =="
sources=()
if [ -n "${DOCS:-}" ]; then
    sources+=("$DOCS")
else
    bash scripts/install-debian-docs.sh "$@"
    for pkg in "$@"; do
        if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            sources+=("debian:$pkg")
        else
            echo "kiban: $pkg is not installed; skipping it" >&2
        fi
    done
fi
if [ ${#sources[@]} -eq 0 ]; then
    echo "kiban: no Debian documentation packages here. Curate a folder of your own documents:" >&2
    echo "    DOCS=/path/to/documents make demo" >&2
    echo "    .venv/bin/kiban curate /path/to/documents --out $OUT/corpus --license CC-BY-4.0" >&2
    exit 2
fi
"$KIBAN" curate "${sources[@]}" --out "$OUT/corpus" --config examples/curate-technical-docs.yaml --overwrite
"$KIBAN" lineage "$OUT/corpus" > /dev/null && echo "lineage verified: $OUT/corpus/manifest.json"
echo "the funnel and the licence table: $OUT/corpus/datacard.md"
[ "$LAST_STEP" -le 1 ] && exit 0

echo
echo "== step 2/9: train a Japanese tokenizer (BPE with byte fallback) =="
"$KIBAN" tokenizer train "$OUT/corpus" --out "$OUT/tokenizer" --vocab-size 8000 --overwrite

echo
echo "== step 3/9: encode the corpus into token shards =="
"$KIBAN" tokenize "$OUT/corpus" --tokenizer "$OUT/tokenizer" --out "$OUT/tokens" --overwrite

echo
echo "== step 4/9: plan the footprint, then train the xs model on this CPU =="
steps="${KIBAN_DEMO_TRAIN_STEPS:-320}"
warmup=$(( steps / 10 < 20 ? steps / 10 : 20 ))
vocab=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['config']['vocab_size'])" "$OUT/tokens/manifest.json")
"$KIBAN" plan --model xs --vocab-size "$vocab" --tokens $((steps * 8 * 2 * 256)) --gpus 1 --gpu cpu \
    --micro-batch 8 --seq-len 256 | sed -n '1,14p'
rm -rf "$OUT/model"
"$KIBAN" train examples/train-xs.yaml --set data.shards="$OUT/tokens" --set out_dir="$OUT/model" \
    --set batch.max_steps="$steps" --set schedule.warmup_steps="$warmup" --set threads="$(nproc)"

echo
echo "== step 5/9: held-out loss against the unigram baseline, and a few continuations =="
.venv/bin/python - "$OUT/model/manifest.json" <<'PY'
import json, math, sys
st = json.load(open(sys.argv[1]))["stats"]
model, unigram = st["eval_loss"], st["unigram_eval_loss"]
print(f"held-out loss: model {model:.3f} nats/token (perplexity {math.exp(model):,.0f}), "
      f"unigram baseline {unigram:.3f} (perplexity {math.exp(unigram):,.0f}): "
      f"{unigram - model:+.3f} nats better")
PY
"$KIBAN" generate "$OUT/model" -p "このコマンドは" -p "ファイルを" -p "Debian では" --max-new-tokens 40 --one-line
[ "$LAST_STEP" -le 5 ] && exit 0

echo
echo "== step 6/9: serve the model (keys, audit log) and ask it in Japanese with the openai client =="
rm -rf "$OUT/serve"
key=$("$KIBAN" keys create --name demo --scopes chat,models --state "$OUT/serve")
port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$KIBAN" serve "$OUT/model" --port "$port" --state "$OUT/serve" 2> "$OUT/serve/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
KIBAN_KEY="$key" KIBAN_URL="http://127.0.0.1:$port/v1" .venv/bin/python - <<'PY'
import os, time
import openai
client = openai.OpenAI(base_url=os.environ["KIBAN_URL"], api_key=os.environ["KIBAN_KEY"], max_retries=0)
for _ in range(300):  # the server loads the model first
    try:
        model = client.models.list().data[0].id
        break
    except openai.APIConnectionError:
        time.sleep(0.2)
question = "Debian でパッケージをインストールするには？"
answer = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": question}], max_tokens=60, temperature=0.7, seed=0
)
print(f"Q: {question}\nA: {answer.choices[0].message.content}")
print(f"({answer.usage.prompt_tokens} prompt + {answer.usage.completion_tokens} completion tokens)")
PY
kill -TERM "$server" && wait "$server" || true
trap - EXIT
"$KIBAN" audit verify --state "$OUT/serve"

[ "$LAST_STEP" -le 6 ] && exit 0

echo
echo "== step 7/9: evaluate on text it never trained on (bits per character) and a cloze multiple-choice task =="
.venv/bin/python scripts/demo_eval_data.py "$OUT/model" "$OUT/tokens" "$OUT/eval-data"
"$KIBAN" eval "$OUT/model" --tasks text:heldout.jsonl,jcommonsenseqa --data-dir "$OUT/eval-data" \
    --out "$OUT/eval" --shots 0
echo "(the held-out documents come from the training corpus, so the contamination check names them: they"
echo " were held out of training by position, which the n-gram check cannot see)"

[ "$LAST_STEP" -le 7 ] && exit 0

echo
echo "== step 8/9: export for the edge: one llama.cpp file (q4_k_m), then its memory and speed here =="
"$KIBAN" export "$OUT/model" --format gguf --quant q4_k_m --out "$OUT/model-q4_k_m.gguf"
"$KIBAN" plan --serve --measure "$OUT/model-q4_k_m.gguf" --threads "$(nproc)" | sed -n '1,9p'
echo "serve it behind the same gateway: $KIBAN serve $OUT/model-q4_k_m.gguf --state $OUT/serve"
[ "$LAST_STEP" -le 8 ] && exit 0

echo
echo "== step 9/9: the robot cell: one pick-and-place episode in MuJoCo behind the safety supervisor =="
rm -rf "$OUT/robot-episode"
"$KIBAN" robot sim --task pick-place --seed 1000 --record "$OUT/robot-episode" --json > "$OUT/robot-summary.json"
.venv/bin/python - "$OUT/robot-summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
t = s["timing"]
print(f"pick-and-place seed {s['seed']}: success {s['success']}, {s['cycles']} cycles at 500 Hz "
      f"({s['sim_time_s']:.1f} s simulated), supervisor interventions {s['interventions']}, "
      f"ground-truth violations {s['violations']}; compute per cycle p50 {t['compute_p50_us']} µs, "
      f"p99 {t['compute_p99_us']} µs")
PY
echo "episode (LeRobot v3 layout): $OUT/robot-episode/; summary: $OUT/robot-summary.json"

echo
echo "Done. Corpus: $OUT/corpus/datacard.md; tokenizer: $OUT/tokenizer/; model (Hugging Face layout,"
echo "with its lineage in manifest.json): $OUT/model/; loss curve: $OUT/model/loss.png;"
echo "server state (keys, audit log): $OUT/serve/; evaluation: $OUT/eval/report.html;"
echo "edge model (llama.cpp, with its lineage): $OUT/model-q4_k_m.gguf;"
echo "robot episode: $OUT/robot-episode/ (summary: $OUT/robot-summary.json)"
