from setuptools import find_packages, setup

setup(
    name="minigrad",
    version="0.1.0",
    description="Reverse-mode autodiff on NumPy with a fused reparameterized-Gaussian kernel, "
                "driving a VAE on MNIST",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["minigrad", "minigrad.*", "kernels", "kernels.*",
                                    "vae", "vae.*"]),
    package_data={"kernels": ["*.cu", "*.cuh"]},
    install_requires=["numpy>=1.24", "numba>=0.59", "matplotlib>=3.7", "tqdm>=4.60"],
    extras_require={
        # numba-cuda: the maintained numba.cuda, whose simulator runs the numba_cuda backend's
        # tests without a GPU (numba's built-in CUDA target is deprecated)
        "dev": ["pytest>=7", "hypothesis>=6", "numba-cuda>=0.30"],
        # CuPy and numba-cuda's toolkit wheels for CUDA 13; for another CUDA install the matching
        # ones (cupy-cuda12x, numba-cuda[cu12], ...)
        "cuda": ["cupy-cuda13x", "numba-cuda[cu13]>=0.30"],
    },
)
