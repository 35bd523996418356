"""The viewer's start view (neuface_ns/viewer.py): a browser that connects while nerfstudio is still drawing the
training cameras must not hide them half-way (nerfstudio's init_scene adds them one by one; iterating them then
raised "dictionary changed size during iteration" and the browser never got a frame)."""

from __future__ import annotations

import contextlib
import threading
import time
from types import SimpleNamespace

from nerfstudio.viewer.viewer import Viewer

from neuface_ns.viewer import _StartAtTrainingView


class _SlowScene:
    """What _move_to_start reads of nerfstudio's Viewer, with init_scene's order: frustums added one at a time,
    `train_state` set after the last one. set_camera_visibility is nerfstudio's own method."""

    set_camera_visibility = Viewer.set_camera_visibility

    def __init__(self):
        self.viser_server = SimpleNamespace(atomic=contextlib.nullcontext)
        self.hide_images = SimpleNamespace(visible=True)
        self.toggled = 0

    def toggle_cameravis_button(self):
        self.toggled += 1
        self.hide_images.visible = False

    def init_scene(self, count: int, delay: float):
        self.camera_handles = {}
        for index in range(count):
            time.sleep(delay)
            self.camera_handles[index] = SimpleNamespace(visible=True, position=(index, 0.0, 1.0), wxyz=(1.0, 0, 0, 0))
        self.train_state = "completed"


def test_the_start_view_waits_for_every_training_camera_before_hiding_them():
    scene = _SlowScene()
    control = object.__new__(_StartAtTrainingView)
    control.viewer, control._hid_cameras = scene, False
    client = SimpleNamespace(camera=SimpleNamespace(position=None, wxyz=None), atomic=contextlib.nullcontext)
    drawer = threading.Thread(target=scene.init_scene, args=(30, 0.01))
    drawer.start()
    time.sleep(0.05)  # the browser connects after the first few frustums are drawn
    assert 0 < len(getattr(scene, "camera_handles", {})) < 30
    control._move_to_start(client, timeout=10.0)
    drawer.join()
    assert len(scene.camera_handles) == 30
    assert not any(handle.visible for handle in scene.camera_handles.values())  # every frustum hidden
    assert scene.toggled == 1 and not scene.hide_images.visible  # the button now says "Show Train Cams"
    assert client.camera.position == (0, 0.0, 1.0)  # moved to the first training camera


def test_the_start_view_gives_up_quietly_when_no_scene_comes():
    scene = _SlowScene()
    control = object.__new__(_StartAtTrainingView)
    control.viewer, control._hid_cameras = scene, False
    client = SimpleNamespace(camera=SimpleNamespace(position=None, wxyz=None), atomic=contextlib.nullcontext)
    control._move_to_start(client, timeout=0.3)
    assert client.camera.position is None and scene.toggled == 0
