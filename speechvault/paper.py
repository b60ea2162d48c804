"""Every parameter taken from the paper, in one place.

Zhang, Zhao & Hu, "A Classification Retrieval Method for Encrypted Speech Based on Deep Neural
Network and Deep Hashing", IEEE Access 8 (2020), doi:10.1109/ACCESS.2020.3036048.
Equation and section numbers are the paper's. Values the paper leaves open are marked
"(ours)" with the reason next to them.
"""

from __future__ import annotations

# --- Rossler chaotic system, eq. 8 (Sec. III-D): dx=-y-z, dy=x+a*y, dz=b+z*(x-c) ---------------
ROSSLER_A = 0.2
ROSSLER_B = 0.2
ROSSLER_C = 5.7

# --- Log-Mel spectrogram, Sec. III-A and IV-E step 1 ----------------------------------------
SAMPLE_RATE = 16_000          # "16 kHz, 16-bit" speech (Sec. V)
N_FFT = 1024                  # IV-E step 1
HOP_LENGTH = 512              # IV-E step 1
N_MELS = 128                  # IV-E step 1
HAMMING_ALPHA = 0.46          # eq. 2-3: W(n) = (1-a) - a*cos(2*pi*n/(N-1))
PAPER_IMAGE_SHAPE = (224, 224, 3)  # Sec. IV-C: "224x224 Log-Mel spectrogram of 3 channels"

# --- Deep hashing, Sec. IV-C/IV-D ------------------------------------------------------------
CNN_FILTERS = (32, 32, 64, 64, 128, 128)  # Fig. 6(a), 3x3 kernels, tanh
CRNN_FILTERS = (32, 32, 64, 64)           # Fig. 6(b): 4 convolutions, "same settings as the CNN"
CONV_KERNEL = (3, 3)
POOL_SIZE = (2, 2)
CRNN_DROPOUT = 0.7
HASH_BITS_CHOICES = (64, 128, 256, 384, 512)  # Table 1
HASH_BITS_DEFAULT = 384                        # "384 was chosen"
NUM_CLASSES_PAPER = 10                         # C = 10

# --- Retrieval, Sec. IV-F eq. 16 ----------------------------------------------------------
TAU_DEFAULT = 0.26            # normalized Hamming threshold used in all experiments

# --- Experiments, Sec. V: test CPOs -----------------------------------------------------------
CPO_GAIN_DB = (-3.0, 3.0)
CPO_RESAMPLE_LOW_RATE = 8_000  # "R.Q": 16 kHz -> 8 kHz -> 16 kHz
