"""The kernels written in CUDA C: the arithmetic in reparam_math.cuh and adam_math.cuh, their
kernels in reparam.cu and adam.cu, built by NVRTC (nvrtc.py) and run through CuPy
(cupy_reparam.py, the cupy backend; cupy_adam.py); gpu.py says whether CuPy sees a GPU."""
