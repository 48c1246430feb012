#!/usr/bin/env bash
# Prepare, on a Debian/Ubuntu machine with package-registry access, what scripts/train_demo_gpu.sh needs on a GPU
# host that has CUDA torch but neither NeMo nor espeak-ng (and maybe no network):
#   bench/wheels/          NeMo's Python 3.12 wheels (bench/fetch-gpu-wheels.sh; ~45 MB)
#   tmp/train-gpu/espeak.tar.gz  espeak-ng + libespeak-ng1 + espeak-ng-data (English only) + libsonic0, unpacked
#                          with `dpkg -x`, plus a stub libpcaudio.so.0 (espeak-ng links the audio-device library even
#                          though --stdout never plays sound; the real one pulls in PulseAudio and ALSA), and
#                          flite + libflite1 + libasound2 (flite links ALSA; writing a file never opens it)
# (packed: bench/gpu-env.sh unpacks it on the GPU host). Carry both with the checkout (tmp/ is git-ignored), then
# run scripts/train_demo_gpu.sh there.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DEST=${ESPEAK_ROOT:-$ROOT/tmp/train-gpu/espeak}

if [ -z "${SKIP_WHEELS:-}" ] && [ ! -d bench/wheels ]; then
    bash bench/fetch-gpu-wheels.sh
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
DEBS=$(mktemp -d)
trap 'rm -rf "$DEBS"' EXIT
$SUDO apt-get update -qq
(cd "$DEBS" && apt-get download espeak-ng libespeak-ng1 espeak-ng-data libsonic0 flite libflite1 libasound2)
rm -rf "$DEST"
mkdir -p "$DEST"
for deb in "$DEBS"/*.deb; do dpkg -x "$deb" "$DEST"; done
LIB="$DEST/usr/lib/x86_64-linux-gnu"
# English is all the demo model hears: drop the other languages' dictionaries (13 MB -> about 3 MB)
find "$LIB/espeak-ng-data" -maxdepth 1 -name '*_dict' ! -name 'en_dict' -delete
rm -rf "$DEST/usr/share/doc" "$DEST/usr/share/man"

cat > "$DEBS/pcaudio_stub.c" <<'EOF'
/* libpcaudio's API, doing nothing: espeak-ng --stdout never opens an audio device. */
#include <stddef.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *device, const char *app, const char *desc)
{ (void)device; (void)app; (void)desc; return NULL; }
int audio_object_open(struct audio_object *o, int format, unsigned int rate, unsigned char channels)
{ (void)o; (void)format; (void)rate; (void)channels; return -1; }
void audio_object_close(struct audio_object *o) { (void)o; }
void audio_object_destroy(struct audio_object *o) { (void)o; }
int audio_object_write(struct audio_object *o, const void *data, size_t bytes)
{ (void)o; (void)data; (void)bytes; return -1; }
int audio_object_drain(struct audio_object *o) { (void)o; return 0; }
int audio_object_flush(struct audio_object *o) { (void)o; return 0; }
const char *audio_object_strerror(struct audio_object *o, int error)
{ (void)o; (void)error; return "no audio device (libpcaudio stub)"; }
EOF
cc -shared -fPIC -O2 -Wl,-soname,libpcaudio.so.0 -o "$LIB/libpcaudio.so.0" "$DEBS/pcaudio_stub.c"

# check it speaks from the unpacked tree alone
out=$(PATH="$DEST/usr/bin:$PATH" LD_LIBRARY_PATH="$LIB" ESPEAK_DATA_PATH="$LIB" \
      espeak-ng --stdout -v en-us+m6 "twenty first of march" | wc -c)
[ "$out" -gt 10000 ] || { echo "unpacked espeak-ng produced $out bytes" >&2; exit 1; }
wav="$DEBS/flite.wav"
PATH="$DEST/usr/bin:$PATH" LD_LIBRARY_PATH="$LIB" flite -voice slt -t "twenty first of march" -o "$wav"
[ "$(wc -c < "$wav")" -gt 10000 ] || { echo "unpacked flite produced $(wc -c < "$wav") bytes" >&2; exit 1; }
# packed (31 MB unpacked, 15 MB packed): with the NeMo wheels it must fit what a lent GPU machine takes (64 MiB)
tar -C "$DEST" -czf "$DEST.tar.gz" .
rm -rf "$DEST"
echo "==> $DEST.tar.gz ($(du -sh "$DEST.tar.gz" | cut -f1)): espeak-ng and flite speak; bench/wheels: $(du -sh bench/wheels 2>/dev/null | cut -f1)"
echo "    carry bench/wheels and tmp/train-gpu with the checkout, then: bash scripts/train_demo_gpu.sh"
