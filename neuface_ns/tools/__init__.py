"""User-facing command-line tools, installed as console scripts (`neuface-eval-mesh`, `neuface-relight`,
`neuface-prepare-facescape`); `scripts/<name>.py` are thin wrappers kept for old commands."""
