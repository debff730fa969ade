/* A stand-in for libnvidia-ml.so.1 exporting the few NVML symbols that
 * nvml-wrapper calls to initialize, find a device and list its processes.
 * Its answers come from environment variables, read at each call:
 *   FAKE_NVML_INIT      return code of nvmlInit_v2 (0 = success, 9 = driver not loaded)
 *   FAKE_NVML_GPUS      "PCI=UUID,PCI=UUID" (index order), PCI as 0000:01:00.0
 *   FAKE_NVML_GRAPHICS_<index>, FAKE_NVML_COMPUTE_<index>
 *                       "pid:bytes,pid:bytes" processes on that GPU
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

enum { OK = 0, INVALID_ARGUMENT = 2, NOT_FOUND = 6, INSUFFICIENT_SIZE = 7 };

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

nvmlReturn_t nvmlInit_v2(void) { return atoi(env("FAKE_NVML_INIT")); }
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return nvmlInit_v2(); }
nvmlReturn_t nvmlShutdown(void) { return OK; }
const char *nvmlErrorString(nvmlReturn_t r) { (void)r; return "fake NVML error"; }

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    snprintf(version, length, "550.54.14");
    return OK;
}

/* Find the GPU whose PCI address (compared without the domain, which NVML
 * writes with 8 digits) or UUID equals `key`; its index + 1 is the handle. */
static long find_gpu(const char *key, int by_uuid) {
    char list[1024];
    snprintf(list, sizeof list, "%s", env("FAKE_NVML_GPUS"));
    long index = 0;
    for (char *save, *entry = strtok_r(list, ",", &save); entry; entry = strtok_r(NULL, ",", &save), index++) {
        char *eq = strchr(entry, '=');
        if (!eq) continue;
        *eq = 0;
        const char *pci = entry, *uuid = eq + 1;
        if (by_uuid) {
            if (strcasecmp(uuid, key) == 0) return index + 1;
        } else {
            const char *a = strchr(pci, ':'), *b = strchr(key, ':');
            if (a && b && strcasecmp(a, b) == 0) return index + 1;
        }
    }
    return 0;
}

nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, nvmlDevice_t *device) {
    long h = find_gpu(bus_id, 0);
    if (!h) return NOT_FOUND;
    *device = (nvmlDevice_t)h;
    return OK;
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    long h = find_gpu(uuid, 1);
    if (!h) return NOT_FOUND;
    *device = (nvmlDevice_t)h;
    return OK;
}

static nvmlReturn_t processes(const char *kind, nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos) {
    char name[64], list[1024];
    long index = (long)device - 1;
    if (index < 0) return INVALID_ARGUMENT;
    snprintf(name, sizeof name, "FAKE_NVML_%s_%ld", kind, index);
    snprintf(list, sizeof list, "%s", env(name));
    unsigned int n = 0;
    nvmlProcessInfo_t found[64];
    for (char *save, *entry = strtok_r(list, ",", &save); entry && n < 64; entry = strtok_r(NULL, ",", &save)) {
        unsigned int pid = 0;
        unsigned long long bytes = 0;
        if (sscanf(entry, "%u:%llu", &pid, &bytes) < 1) continue;
        found[n].pid = pid;
        found[n].usedGpuMemory = bytes;
        found[n].gpuInstanceId = 0xFFFFFFFF;
        found[n].computeInstanceId = 0xFFFFFFFF;
        n++;
    }
    if (!infos || *count < n) {
        *count = n;
        return n == 0 ? OK : INSUFFICIENT_SIZE;
    }
    memcpy(infos, found, n * sizeof *found);
    *count = n;
    return OK;
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    return processes("GRAPHICS", d, count, infos);
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    return processes("COMPUTE", d, count, infos);
}
