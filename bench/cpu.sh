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

# cpu_ticks_split PID -> "USER SYSTEM": the two parts of cpu_ticks.
cpu_ticks_split() {
    for p in "$1" $(ps -o pid= --ppid "$1"); do
        awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null
    done | awk '{u += $1; s += $2} END {print u + 0, s + 0}'
}
