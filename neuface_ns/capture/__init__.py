"""`neuface-process-data`: your own face, from a folder of photos, a phone video or a nerfstudio dataset, to a
scene that `ns-train neuface-facescape` (and `neuface-dtu`) trains on.

One module per stage, in the order they run:

    frames.py      photos (EXIF orientation) / video (even sampling, blur rejection) / transforms.json
    sfm.py         COLMAP structure from motion through pycolmap (shared intrinsics, undistortion)
    landmarks.py   MediaPipe Face Mesh per image, robust multi-view triangulation (RANSAC over views)
    face_frame.py  NeuFace's face frame from the landmarks (nose tip, eyes, mouth) and the metric scale
    masks.py       the face region: visible surface inside the unit face sphere, consistent across views
    output.py      the FaceScape-layout and IDR-layout scene, the contact sheet, the JSON report
    cli.py         the tyro command line

The capture dependencies (mediapipe, pycolmap) come with `pip install -e ".[capture]"` and are imported only
where they are used, so nothing else in neuface_ns needs them.
"""
