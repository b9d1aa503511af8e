#!/usr/bin/env sh
# A shell pipeline over engram: load the sample memories, then answer many cues at once
# (one connection, answers in input order) and print each cue with its best memory.
#   sh examples/pipeline.sh            # against the embedded default server
#   ENGRAM_SERVER=host:port sh examples/pipeline.sh
set -eu
here=$(dirname "$0")
engram import "$here/memories.jsonl" --quiet >&2  # the summary, off the pipe
engram recall - --limit 1 < "$here/cues.txt" |
  python3 -c '
import json, sys
for line in sys.stdin:
    answer = json.loads(line)
    best = answer["results"][0]["content"] if answer.get("results") else "(nothing)"
    print(answer["cue"], best, sep="\t")
'
