#!/bin/sh
# The Python install steps of every image in the Dockerfile, in one place so that
# tests/deploy/test_install_and_run.py runs exactly these steps in a fresh virtualenv.
#
#   install.sh deps VENV LOCK [CONSTRAINTS]   create VENV (if missing) with the pinned pip and
#                                             setuptools, then install LOCK (requirements/*.txt)
#   install.sh app VENV SRC                   build and install the clapsearch package from SRC
#                                             without touching its dependencies, then `pip check`
#
# Locks with sha256 hashes (runtime, gpu, build) are installed with --require-hashes: a package
# or version that is not in the lock is refused. Set PIP_CHECK=0 where the lock replaces a
# declared dependency on purpose (the CUDA image: onnxruntime-gpu for onnxruntime, faiss-gpu for
# faiss-cpu). PYTHON picks the interpreter that creates VENV (default python3).
set -eu

step=${1:?usage: install.sh deps|app VENV ...}
venv=${2:?usage: install.sh deps|app VENV ...}
here=$(cd "$(dirname "$0")" && pwd)
requirements=${REQUIREMENTS_DIR:-$here/../../requirements}
export PIP_DISABLE_PIP_VERSION_CHECK=1

pip_locked() {   # pip install a lock file: hashes enforced when it has them, never extra deps
    _file=$1
    shift
    if grep -q -- '--hash=sha256:' "$_file"; then
        set -- --require-hashes "$@"
    fi
    "$venv/bin/python" -m pip install --no-deps "$@" -r "$_file"
}

case $step in
    deps)
        lock=${3:?usage: install.sh deps VENV LOCK [CONSTRAINTS]}
        if [ ! -x "$venv/bin/python" ]; then
            "${PYTHON:-python3}" -m venv "$venv"
        fi
        pip_locked "$requirements/build.txt"        # pip and setuptools at their pinned versions
        if [ -n "${4:-}" ]; then
            pip_locked "$lock" -c "$4"
        else
            pip_locked "$lock"
        fi
        ;;
    app)
        src=${3:?usage: install.sh app VENV SRC}
        # setuptools comes from build.txt (installed by `deps`), so no unpinned build environment
        "$venv/bin/python" -m pip install --no-deps --no-build-isolation "$src"
        if [ "${PIP_CHECK:-1}" != 0 ]; then
            "$venv/bin/python" -m pip check
        fi
        ;;
    *)
        echo "install.sh: unknown step $step (deps, app)" >&2
        exit 2
        ;;
esac
