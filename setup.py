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
        "dev": ["pytest>=7", "hypothesis>=6"],
        # CuPy for CUDA 13; for another CUDA install the matching wheel (cupy-cuda12x, ...)
        "cuda": ["cupy-cuda13x"],
    },
)
