// KafkaJS against minikafka, for tests/kafkajs.rs. Creates a topic, sends
// records with an idempotent producer (plain and gzip batches), reads them
// back as a consumer group that commits, describes the group while it runs
// and after it left, then deletes it. Prints one JSON object on stdout
// with what each step saw; exits non-zero, with the error on stderr, if a
// step fails.
'use strict';

const { Kafka, logLevel, CompressionTypes } = require('kafkajs');

const [bootstrap, topic, perBatchArg] = process.argv.slice(2);
const perBatch = Number(perBatchArg);
const group = `${topic}-group`;

function withDeadline(what, ms, promise) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

async function main() {
  const kafka = new Kafka({ clientId: 'kjs-roundtrip', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const report = {};
  report.created = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  report.sent = [];
  for (const [name, compression] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
    const messages = Array.from({ length: perBatch }, (_, i) => ({
      key: `${name}-${i}`,
      value: `value-${name}-${i}`,
      headers: { i: `${i}` },
    }));
    const answers = await producer.send({ topic, compression, acks: -1, messages });
    report.sent.push(...answers.map((a) => [a.partition, a.errorCode, Number(a.baseOffset)]));
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: group, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const consumed = [];
  await withDeadline('consuming', 30000, new Promise((resolve) => {
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        consumed.push([partition, Number(message.offset), message.key.toString(), message.value.toString(),
          message.headers.i.toString()]);
        if (consumed.length === 2 * perBatch) resolve();
      },
    });
  }));
  report.consumed = consumed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const running = (await admin.describeGroups([group])).groups[0];
  report.described_running = [running.state, running.protocolType, running.members.length];
  await consumer.disconnect();
  const after = (await admin.describeGroups([group])).groups[0];
  report.described_after = [after.state, after.members.length];
  const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  report.committed = committed[0].partitions.map((p) => [p.partition, Number(p.offset)]).sort((a, b) => a[0] - b[0]);
  report.deleted = (await admin.deleteGroups([group])).map((r) => [r.groupId, r.errorCode]);
  await admin.disconnect();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((e) => {
  process.stderr.write(`kjs_roundtrip: ${e.stack || e}\n`);
  process.exit(1);
});
