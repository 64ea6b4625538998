# Sourced by the benchmark scripts (from the repository's root).
#
# cpu_ticks PID -> the CPU ticks (user + system) of a process and its children: a
# gateway's plugin processes are part of its cost.
cpu_ticks() {
    t=$(awk '{print $14 + $15}' "/proc/$1/stat")
    for c in $(ps -o pid= --ppid "$1"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)
