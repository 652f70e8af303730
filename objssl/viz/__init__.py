"""Pictures a person can check: proposals on an image, box-aware views side by side."""

from objssl.viz.draw import box_colors, draw_boxes, save_png, side_by_side

__all__ = ["box_colors", "draw_boxes", "side_by_side", "save_png"]
