"""`streamanon batch`: many files, locally (a process pool) or on a Ray cluster.

- `plan`: what to do (inputs found in a folder or a manifest, their relative output paths).
- `journal`: what is done (JSONL in the output folder; a rerun skips it).
- `worker`: what one worker process does with one task (a file or a time chunk of a video).
- `chunks`: long videos cut at keyframes, anonymized with a warm-up overlap, joined losslessly.
- `local`, `ray_backend`: where tasks run; `runner`: the loop that hands them out.
- `cli`: the command line.
"""
