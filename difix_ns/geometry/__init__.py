"""Camera geometry shared by training, rendering and the viewer (numpy/torch only, no nerfstudio import).

* ``poses``: pose distance, nearest views, scene extent, stepping a pose toward a target.
* ``interpolation``: quaternions, slerp and smooth trajectories through poses.
* ``references``: the one provider of Difix reference views (which training view, and its image at a size).
"""
