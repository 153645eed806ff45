# Sourced by the recipe scripts that run several jobs side by side on the one GPU and
# come back over several device calls. The caller sets $runs and defines collect (copy
# logs and reports to $OUT) and pack (the final artefacts to $OUT).

job() {  # job NAME COMMAND...: its own session and folder under $runs (with a copy of the
  # shipped registry in reg/), output to $runs/NAME.log, a `done` file when it ends
  local name=$1; shift
  mkdir -p "$runs/$name/reg" && cp -r "$repo/core/default_adapter/zh-tw" "$runs/$name/reg/zh-tw"
  (cd "$runs/$name" && setsid nohup bash -c "$* ; echo \"exit status: \$?\"; touch done" \
     >"$runs/$name.log" 2>&1 < /dev/null &)
}

finished() { [ "$(ls "$runs"/*/done 2>/dev/null | wc -l)" -ge "$(ls "$runs"/*.log | wc -l)" ]; }

wait_jobs() {  # wait_jobs SECONDS: until every job is done or the time is up; then pack
  local deadline=$((SECONDS + ${1:-500}))
  while [ $SECONDS -lt $deadline ] && ! finished; do
    sleep 15; collect  # what is under $OUT comes back even if the call is cut off
  done
  collect; tail -n 4 "$runs"/*.log
  if finished; then pack; fi
}
