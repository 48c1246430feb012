"""``parakeet-stream bench``: how many live streams one engine sustains, at what latency, against baselines.

N streams are fed at real-time pace (20 ms packets, staggered starts) from speech with pauses. Latency is
measured from the engine's own timestamps: a Partial carries ``audio_end`` (the stream audio its result depends
on) and ``emitted_at``; the feeder records when the packet holding sample ``audio_end`` arrived. The same audio
runs through the baselines in the same process:

* ``per_stream``  — the engine with ``max_batch=1``: one stream per model call, with every per-step gain of the
  engine (traced step, packed weights, kept keys and values), so it isolates what batching brings;
* ``per_stream_nemo`` — one stream per call of NeMo's own eager ``cache_aware_stream_step`` on a copy of the model
  no engine has changed (``nemo_step=True``): how NVIDIA's Pipecat service and dalston's nemotron path step;
* ``vad_offline`` — the original dalston design: Silero VAD segments, each decoded offline after its end;
* ``nemo_pipeline`` — NeMo's own ``nemo.collections.asr.inference`` cache-aware pipeline.

The ramp raises N until p95 latency exceeds the chunk or latency keeps growing (a backlog); the last N that
passed is the maximum sustainable stream count. Heavy imports (torch, NeMo) happen inside functions.

The modules, bottom up (each imports only those listed before it):

* ``config``     — ``BenchConfig``, the baseline names, packet size and grace period;
* ``measures``   — ``LevelResult`` and the latency, growth and memory measurements every system shares;
* ``workload``   — the audio the streams play: espeak-ng compositions or files, with their speech ends;
* ``feeder``     — ``Feeder``: every stream's packets pushed at real-time pace from one thread;
* ``ramp``       — ``ramp``: the largest sustainable N, by doubling then bisection;
* ``models``     — the model under test (random weights or a checkpoint) and its copy with NeMo's own layers;
* ``systems``    — the engine and the engine-based baselines (``per_stream``, ``per_stream_nemo``), ``vad_offline``;
* ``nemo_pipeline`` — the ``nemo_pipeline`` baseline, ramped;
* ``report``     — the JSON document, the markdown table, the machine;
* ``run``        — ``run_benchmark`` (every system in turn) and ``main`` (the command's entry point).
"""
