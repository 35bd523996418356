"""Writers of the generator's output layouts: ``idr`` (DTU / IDR), ``facescape`` (NeuFace's FaceScape
layout, the bundled sample) and ``release`` (a tiny FaceScape multi-view release, input of
scripts/prepare_facescape.py); ``facescape_frames`` holds the FaceScape frames both FaceScape writers share.
"""
