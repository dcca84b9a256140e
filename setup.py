"""FaceLock: face-recognition smart-lock firmware with a C core (cffi, API mode)."""

from glob import glob

from setuptools import find_packages, setup

RUNTIME = [
    "numpy>=1.24",
    "cffi>=1.15",
    "cryptography>=47",  # 47: hazmat.primitives.hpke (templates sealed to a door)
    "click>=8.1",
    "rich>=13",
    "pillow>=10",
    "paho-mqtt>=2.0,<2.3",  # firmware/telemetry/paho_io.py overrides private methods (checked on 2.2)
    "gpiozero>=2.0",
    "ai-edge-litert>=1.0; platform_machine == 'x86_64' or platform_machine == 'aarch64'",
    "opencv-python-headless>=4.8",
]

EXTRAS = {
    # facelock-central, the fleet management service (PostgreSQL or SQLite through SQLAlchemy + Alembic).
    "central": ["sqlalchemy>=2.0,<2.1", "alembic>=1.13,<2", "psycopg[binary]>=3.1,<4",
                # the web console (central/console): ASGI app, templates, HTTPS server, operator auth
                "starlette>=0.40,<2", "jinja2>=3.1,<4", "uvicorn>=0.30,<1", "python-multipart>=0.0.9,<1",
                "argon2-cffi>=23.1,<26", "pyotp>=2.9,<3"],
    # TPM 2.0 keystore backend: compiles against libtss2-dev.
    "tpm": ["tpm2-pytss>=2.1"],
    # Raspberry Pi camera and GPIO.
    "pi": ["picamera2", "lgpio"],
    # make demo's faces (scikit-image's astronaut, matplotlib's Grace Hopper): the wheel smoke test uses them.
    "demo": ["scikit-image>=0.21", "matplotlib>=3.7"],
    "dev": [
        "build>=1.0,<2",
        "pytest>=7",
        "hypothesis>=6",
        "ruff>=0.4",
        "scikit-image>=0.21",
        "atheris>=2.3",
        "matplotlib>=3.7",
        # the console's tests: an HTTPS client, and Playwright driving Debian's chromium (no browser download)
        "httpx>=0.27,<1",
        "playwright>=1.45,<2",
    ],
}

setup(
    name="facelock",
    version="0.1.0",
    description="Face-recognition smart-lock firmware: liveness, fuzzy-extractor keys, chaotic+AEAD image sealing",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["firmware", "firmware.*", "provisioning", "provisioning.*", "central", "central.*"]),
    include_package_data=True,
    # The example config and the hardened systemd unit travel inside the package (install-system copies them
    # out); the device models go to <prefix>/share/facelock/models, where firmware.vision.manifest looks.
    package_data={"firmware": ["py.typed", "facelock.example.toml", "systemd/*.service"], "central": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py",
                                                                        "console/migrations/*.py", "console/migrations/*.mako",
                                                                        "console/migrations/versions/*.py", "console/templates/*.html",
                                                                        "console/static/*"]},
    data_files=[
        ("share/facelock/models", sorted(glob("models/*.tflite") + glob("models/*.json") + ["models/README.md"])),
        ("share/facelock/models/liveness", sorted(glob("models/liveness/*.tflite") + glob("models/liveness/*.json")
                                                  + ["models/liveness/README.md"])),
    ],
    setup_requires=["cffi>=1.15"],
    cffi_modules=["native/build_native.py:ffibuilder"],
    install_requires=RUNTIME,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "facelock=provisioning.cli:main",
            "facelockd=firmware.daemon:main",
            "facelock-central=central.cli:main",
        ]
    },
    zip_safe=False,
)
