"""Blender side of scripts/render_scan_scene.py: renders one job file with Cycles on the CPU, headless.

    blender -b --factory-startup --python scripts/blender/render_views.py -- job.json

The job (written by render_scan_scene.py, everything already in Blender's Z-up world, 1 unit = 100 mm):
- "mesh": OBJ of the scan (with UVs), "texture": its colour photo texture;
- "material": Principled BSDF settings (specular, roughness, subsurface weight and radius), or
  {"diffuse_albedo": a} for a plain Lambertian surface (the SH check's sphere);
- "environments": {name: {"path": equirectangular .exr, "strength": float}};
- "views": [{"output": path, "environment": name, "c2w": 4x4 Blender camera-to-world, "lens_mm",
  "sensor_mm", "width", "height", "samples", "seed", "format": "PNG" (8-bit sRGB RGBA) or "EXR" (linear),
  "hide_scan": bool, "passes": optional folder}]; the environment probes (six 90-degree views from the origin,
  scan hidden, linear EXR) are views like the others;
- a view with "passes" also writes Cycles' light passes of that same render (same samples and seed, so they add
  up to its image) as linear 32-bit EXRs <passes>/<name>.exr, name in PASSES (RGBA for Image, RGB otherwise).
- optional "room": {"half_size": float, "cells": float, "strength": float, "clutter": [[x, y, z, size], ...]}:
  a box around the scene (plus cubes at the clutter positions, Blender world, so that the background is not one
  plane, which structure from motion cannot initialise from) whose
  inside shows random-coloured 3D cells (emission) to the camera only (it casts no light or shadow and is not
  reflected, so the scan's light is the environment's alone) and makes every view opaque: a background with
  texture for structure from motion (scripts/render_capture_scene.py).

Only bpy and the standard library are used (Debian's Blender has its own Python).
"""

import json
import math
import sys

import bpy
from mathutils import Matrix


#: Render-layer outputs written for a view with "passes": the combined image and what it is the sum of
#: (Image = DiffCol (DiffDir + DiffInd) + GlossCol (GlossDir + GlossInd) for the opaque, non-emissive skin
#: material, all premultiplied by the pixel's coverage; Blender 3's Cycles counts subsurface scattering in the
#: diffuse passes and leaves its Subsurface passes empty).
PASSES = ("Image", "DiffDir", "DiffInd", "DiffCol", "GlossDir", "GlossInd", "GlossCol")
PASS_FLAGS = ("diffuse_direct", "diffuse_indirect", "diffuse_color", "glossy_direct", "glossy_indirect", "glossy_color")


def _job():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    if len(argv) != 1:
        raise SystemExit("usage: blender -b --factory-startup --python render_views.py -- job.json")
    with open(argv[0]) as f:
        return json.load(f)


def _reset_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = False  # Debian's build has no OpenImageDenoise; real photos are noisy anyway
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.max_bounces = 8
    scene.cycles.diffuse_bounces = 4
    scene.cycles.glossy_bounces = 4
    scene.cycles.transmission_bounces = 4
    scene.render.film_transparent = True  # alpha = the scan's coverage (quality check; masks come from the mesh)
    scene.view_settings.view_transform = "Standard"  # a plain sRGB photo, no filmic tone curve
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    return scene


def _import_scan(job):
    bpy.ops.wm.obj_import(filepath=job["mesh"], forward_axis="Y", up_axis="Z")
    scan = bpy.context.selected_objects[0]
    for polygon in scan.data.polygons:
        polygon.use_smooth = True
    m = job["material"]
    material = bpy.data.materials.new("skin")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    if "diffuse_albedo" in m:  # the SH check's white sphere: a pure Lambertian BSDF (Oren-Nayar roughness 0)
        nodes.remove(nodes["Principled BSDF"])
        diffuse = nodes.new("ShaderNodeBsdfDiffuse")
        diffuse.inputs["Color"].default_value = (*[m["diffuse_albedo"]] * 3, 1.0)
        diffuse.inputs["Roughness"].default_value = 0.0
        links.new(diffuse.outputs["BSDF"], nodes["Material Output"].inputs["Surface"])
        scan.data.materials.clear()
        scan.data.materials.append(material)
        return scan
    bsdf = nodes["Principled BSDF"]
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = bpy.data.images.load(job["texture"])
    texture.image.colorspace_settings.name = "sRGB"
    links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    links.new(texture.outputs["Color"], bsdf.inputs["Subsurface Color"])
    bsdf.inputs["Subsurface"].default_value = m["subsurface"]
    bsdf.inputs["Subsurface Radius"].default_value = m["subsurface_radius"]
    bsdf.inputs["Specular"].default_value = m["specular"]
    bsdf.inputs["Roughness"].default_value = m["roughness"]
    scan.data.materials.clear()
    scan.data.materials.append(material)
    return scan


def _set_environment(scene, environment):
    world = scene.world or bpy.data.worlds.new("world")
    scene.world = world
    world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    nodes.clear()
    texture = nodes.new("ShaderNodeTexEnvironment")
    texture.image = bpy.data.images.load(environment["path"], check_existing=True)
    background = nodes.new("ShaderNodeBackground")
    background.inputs["Strength"].default_value = environment["strength"]
    output = nodes.new("ShaderNodeOutputWorld")
    links.new(texture.outputs["Color"], background.inputs["Color"])
    links.new(background.outputs["Background"], output.inputs["Surface"])


def _add_room(room):
    """A box seen by camera rays only, with a 3D procedural emission texture (see the module doc)."""
    bpy.ops.mesh.primitive_cube_add(size=2.0 * room["half_size"], location=(0.0, 0.0, 0.0))
    box = bpy.context.active_object
    material = bpy.data.materials.new("room")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    # Random-coloured Voronoi cells at two scales plus fine noise, on world positions: every patch of every wall
    # and cube is different (an image box-projected on the walls repeats on opposite walls, which structure from
    # motion then confuses)
    geometry = nodes.new("ShaderNodeNewGeometry")
    coarse = nodes.new("ShaderNodeTexVoronoi")
    coarse.inputs["Scale"].default_value = room.get("cells", 1.2)
    fine = nodes.new("ShaderNodeTexVoronoi")
    fine.inputs["Scale"].default_value = 4.0 * room.get("cells", 1.2)
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 20.0
    mix = nodes.new("ShaderNodeMixRGB")
    mix.inputs["Fac"].default_value = 0.35
    grain = nodes.new("ShaderNodeMixRGB")
    grain.blend_type = "MULTIPLY"
    grain.inputs["Fac"].default_value = 0.5
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = room.get("strength", 1.0)
    output = nodes.new("ShaderNodeOutputMaterial")
    for texture in (coarse, fine, noise):
        links.new(geometry.outputs["Position"], texture.inputs["Vector"])
    links.new(coarse.outputs["Color"], mix.inputs["Color1"])
    links.new(fine.outputs["Color"], mix.inputs["Color2"])
    links.new(mix.outputs["Color"], grain.inputs["Color1"])
    links.new(noise.outputs["Color"], grain.inputs["Color2"])
    links.new(grain.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    box.data.materials.append(material)
    objects = [box]
    for x, y, z, size in room.get("clutter", []):
        bpy.ops.mesh.primitive_cube_add(size=size, location=(x, y, z), rotation=(0.3 * x, 0.5 * y, 0.7 * z))
        cube = bpy.context.active_object
        cube.data.materials.append(material)
        objects.append(cube)
    for item in objects:
        for flag in ("visible_diffuse", "visible_glossy", "visible_transmission", "visible_volume_scatter", "visible_shadow"):
            setattr(item, flag, False)
    return objects


def _camera(scene):
    data = bpy.data.cameras.new("camera")
    camera = bpy.data.objects.new("camera", data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    data.sensor_fit = "HORIZONTAL"
    data.clip_start = 0.01
    data.clip_end = 100.0
    return camera


def _pass_outputs(scene, folder):
    """Compositor: render layer -> Composite, and every pass in PASSES -> its own EXR file in `folder`
    (Blender appends the frame number to each file name; render_scan_scene.py renames them)."""
    layer = scene.view_layers[0]
    for flag in PASS_FLAGS:
        setattr(layer, f"use_pass_{flag}", True)
    scene.use_nodes = True
    scene.render.use_compositing = True
    tree = scene.node_tree
    tree.nodes.clear()
    render_layers = tree.nodes.new("CompositorNodeRLayers")
    composite = tree.nodes.new("CompositorNodeComposite")
    tree.links.new(render_layers.outputs["Image"], composite.inputs["Image"])
    output = tree.nodes.new("CompositorNodeOutputFile")
    output.base_path = folder
    output.format.file_format, output.format.color_depth = "OPEN_EXR", "32"
    output.file_slots.clear()
    for name in PASSES:
        if name not in render_layers.outputs:
            raise SystemExit(f"render_views: this Blender has no '{name}' pass")
        output.file_slots.new(name)
        slot = output.file_slots[name]
        slot.use_node_format = False
        slot.format.file_format, slot.format.color_depth = "OPEN_EXR", "32"
        slot.format.color_mode = "RGBA" if name == "Image" else "RGB"
        tree.links.new(render_layers.outputs[name], output.inputs[name])


def _no_pass_outputs(scene):
    scene.use_nodes = False
    layer = scene.view_layers[0]
    for flag in PASS_FLAGS:
        setattr(layer, f"use_pass_{flag}", False)


def _render(scene, camera, view, file_format):
    camera.matrix_world = Matrix(view["c2w"])
    camera.data.type = "PERSP"
    camera.data.lens = view["lens_mm"]
    camera.data.sensor_width = view["sensor_mm"]
    scene.render.resolution_x = view["width"]
    scene.render.resolution_y = view["height"]
    scene.render.resolution_percentage = 100
    scene.cycles.samples = view["samples"]
    scene.cycles.seed = view.get("seed", 0)
    settings = scene.render.image_settings
    if file_format == "PNG":
        settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGBA", "8"
    else:  # linear radiance for the SH probes
        settings.file_format, settings.color_mode, settings.color_depth = "OPEN_EXR", "RGB", "32"
    scene.render.filepath = view["output"]
    bpy.ops.render.render(write_still=True)


def main():
    job = _job()
    scene = _reset_scene()
    scan = _import_scan(job)
    camera = _camera(scene)
    room = _add_room(job["room"]) if job.get("room") else None
    environments = job["environments"]
    views = job["views"]
    for index, view in enumerate(views):
        _set_environment(scene, environments[view["environment"]])
        scan.hide_render = bool(view.get("hide_scan", False))
        # The probes look at the environment itself: it must not be transparent there.
        scene.render.film_transparent = not scan.hide_render and room is None
        if room is not None:
            for item in room:
                item.hide_render = scan.hide_render  # the probes see the environment alone
        if view.get("passes"):
            _pass_outputs(scene, view["passes"])
        else:
            _no_pass_outputs(scene)
        print(f"render_views: {index + 1}/{len(views)} -> {view['output']}", flush=True)
        _render(scene, camera, view, view.get("format", "PNG"))


main()
